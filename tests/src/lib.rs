//! End-to-end tests of odoogate live in `tests/`; they need root, the
//! release binary (`ODOOGATE_BIN`) and the Python clients (`ODOOGATE_PYTHON`),
//! which `cargo xtask test` provides.
