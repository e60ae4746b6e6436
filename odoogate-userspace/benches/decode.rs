//! Throughput of `rpc::decode_request` on the real Odoo 19 captures and on
//! generated `create` calls of 1 KiB, 100 KiB and 10 MiB.
//!
//! `cargo xtask bench` runs this with `ODOOGATE_BENCH_INPUTS` set to a
//! directory: the bench then writes every body it decodes there, with a
//! `manifest.json`, so that `benches/python_decode.py` times Python's
//! decoders on the same bytes. Criterion's estimates land under
//! `$CRITERION_HOME/<surface>/<case>/new/estimates.json`.
//!
//! With `ODOOGATE_BENCH_CASE=<surface>/<case>` and `ODOOGATE_BENCH_PASSES=N`
//! set, the bench only decodes that case's bodies N times and exits, so
//! that `cargo xtask bench` can count its instructions under callgrind.

mod corpus;

/// The allocator of the daemon (`src/main.rs`), so that the bench measures
/// the allocation cost the daemon pays.
#[global_allocator]
static GLOBAL: odoogate::memory::Allocator = odoogate::memory::Allocator;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use odoogate::rpc::{DecodeLimits, decode_request};

use corpus::Case;

fn decode(criterion: &mut Criterion) {
    let cases = corpus::cases();
    let limits = DecodeLimits::default();
    check_cases_decode(&cases, &limits);
    if let Some(directory) = std::env::var_os("ODOOGATE_BENCH_INPUTS") {
        write_inputs(&cases, Path::new(&directory)).expect("the bench inputs directory is writable");
    }

    for case in &cases {
        let mut group = criterion.benchmark_group(case.surface.name());
        group.throughput(Throughput::Bytes(case.body_bytes()));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        group.bench_function(&case.label, |bencher| {
            bencher.iter(|| {
                for request in &case.requests {
                    let _ = black_box(decode_request(black_box(request), &limits));
                }
            });
        });
        group.finish();
    }
}

/// Fails the run when a bench body does not decode to a call, because the
/// time of an early error tells nothing about the decoder's throughput.
fn check_cases_decode(cases: &[Case], limits: &DecodeLimits) {
    for case in cases {
        assert!(!case.requests.is_empty(), "{}/{} has no requests", case.surface.name(), case.label);
        for request in &case.requests {
            match decode_request(request, limits) {
                Ok(Some(_)) => {}
                other => panic!("{}/{} {}: decoded to {other:?}", case.surface.name(), case.label, request.target),
            }
        }
    }
}

/// Writes each case's bodies and a manifest naming them, for the Python
/// side of the comparison.
fn write_inputs(cases: &[Case], directory: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(directory)?;
    let mut manifest = Vec::new();
    for case in cases {
        let mut bodies = Vec::new();
        for (index, request) in case.requests.iter().enumerate() {
            let name = format!("{}-{}-{index:03}.body", case.surface.name(), case.label);
            std::fs::write(directory.join(&name), &request.body)?;
            bodies.push(name);
        }
        manifest.push(serde_json::json!({
            "surface": case.surface.name(),
            "case": case.label,
            "python": case.surface.python_decoder(),
            "bodies": bodies,
            "bytes": case.body_bytes(),
        }));
    }
    std::fs::write(directory.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)
}

/// Decodes one case's bodies `passes` times, for instruction counts.
fn decode_passes(case_key: &str, passes: usize) {
    let (surface, label) = case_key.split_once('/').expect("ODOOGATE_BENCH_CASE is <surface>/<case>");
    let cases = corpus::cases_where(|s, l| s.name() == surface && l == label);
    let [case] = cases.as_slice() else {
        panic!("ODOOGATE_BENCH_CASE {case_key} names no case");
    };
    let limits = DecodeLimits::default();
    for _ in 0..passes {
        for request in &case.requests {
            let _ = black_box(decode_request(black_box(request), &limits));
        }
    }
}

criterion_group!(benches, decode);

fn main() {
    let case = std::env::var("ODOOGATE_BENCH_CASE").ok();
    let passes = std::env::var("ODOOGATE_BENCH_PASSES").ok().and_then(|passes| passes.parse().ok());
    if let (Some(case), Some(passes)) = (case, passes) {
        decode_passes(&case, passes);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
