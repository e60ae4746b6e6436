//! The XML-RPC scanner against quick-xml on arbitrary bodies. Checks: no
//! panic, and on every body the scanner does not defer, the same document
//! or error from both, with and without the stop at `<params>`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use odoogate::rpc::xmlrpc::read_with_each_tokenizer;

fuzz_target!(|body: &[u8]| {
    for stop_at_params in [false, true] {
        let readings = read_with_each_tokenizer(body, 16, stop_at_params);
        if let Some(scanner) = readings.scanner {
            assert_eq!(scanner, readings.quick_xml, "stop_at_params {stop_at_params}");
        }
    }
});
