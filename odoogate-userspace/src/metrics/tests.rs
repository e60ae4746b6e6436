use super::*;
use crate::audit::Decision;

fn call(integration: Option<&str>, decision: Decision, latency_us: u64) -> AuditRecord {
    let mut record = AuditRecord::new(AuditEvent::Call, "call");
    record.integration = integration.map(str::to_owned);
    record.protocol = Some("jsonrpc");
    record.decision = Some(decision);
    record.latency_us = Some(latency_us);
    record
}

fn error(event: AuditEvent, code: &str) -> AuditRecord {
    let mut record = AuditRecord::new(event, "error");
    record.error_code = Some(code.to_owned());
    record
}

/// Returns the value of the sample line that starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.parse().unwrap())
}

#[test]
fn calls_counted_by_labels() {
    let metrics = Metrics::new();
    metrics.observe(&call(Some("crm"), Decision::Allow, 1_500));
    metrics.observe(&call(Some("crm"), Decision::Allow, 2_000));
    metrics.observe(&call(None, Decision::WouldDeny, 40_000));
    let text = metrics.encode();

    let allowed = r#"odoogate_calls_total{integration="crm",protocol="jsonrpc",decision="allow"}"#;
    let unidentified = r#"odoogate_calls_total{integration="",protocol="jsonrpc",decision="would_deny"}"#;
    assert_eq!(sample(&text, allowed), Some(2.0), "{text}");
    assert_eq!(sample(&text, unidentified), Some(1.0), "{text}");
}

#[test]
fn durations_fill_histogram() {
    let metrics = Metrics::new();
    metrics.observe(&call(Some("crm"), Decision::Allow, 1_500));
    metrics.observe(&call(Some("crm"), Decision::Allow, 40_000));
    let text = metrics.encode();

    assert_eq!(sample(&text, r#"odoogate_call_duration_seconds_count{protocol="jsonrpc"}"#), Some(2.0), "{text}");
    assert_eq!(sample(&text, r#"odoogate_call_duration_seconds_bucket{le="0.001",protocol="jsonrpc"}"#), Some(0.0), "{text}");
    assert_eq!(sample(&text, r#"odoogate_call_duration_seconds_bucket{le="0.0025",protocol="jsonrpc"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"odoogate_call_duration_seconds_bucket{le="0.05",protocol="jsonrpc"}"#), Some(2.0), "{text}");
    let sum = sample(&text, r#"odoogate_call_duration_seconds_sum{protocol="jsonrpc"}"#).unwrap();
    assert!((sum - 0.0415).abs() < 1e-9, "{text}");
}

#[test]
fn errors_counted_by_code() {
    let metrics = Metrics::new();
    metrics.observe(&error(AuditEvent::DecodeError, "invalid_xml"));
    metrics.observe(&error(AuditEvent::DecodeError, "invalid_xml"));
    metrics.observe(&error(AuditEvent::FramingAnomaly, "duplicate_content_length"));
    let mut gaps = AuditRecord::new(AuditEvent::CaptureGap, "gap");
    gaps.count = Some(3);
    metrics.observe(&gaps);
    let text = metrics.encode();

    assert_eq!(sample(&text, r#"odoogate_decode_errors_total{code="invalid_xml"}"#), Some(2.0), "{text}");
    let anomaly = r#"odoogate_framing_anomalies_total{code="duplicate_content_length"}"#;
    assert_eq!(sample(&text, anomaly), Some(1.0), "{text}");
    assert_eq!(sample(&text, "odoogate_capture_gaps_total"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "odoogate_calls_total"), None, "an error record is no call: {text}");
}

#[test]
fn capture_stats_copied() {
    let metrics = Metrics::new();
    let stats = CaptureStats { packets: 120, records: 100, ring_full: 7, truncated: 2, header_errors: 1, ..CaptureStats::default() };
    metrics.set_capture_stats(&stats);
    metrics.set_capture_stats(&CaptureStats { ring_full: 9, ..stats });
    let text = metrics.encode();

    assert_eq!(sample(&text, "odoogate_ebpf_packets_total"), Some(120.0), "{text}");
    assert_eq!(sample(&text, "odoogate_ebpf_ring_records_total"), Some(100.0), "{text}");
    assert_eq!(sample(&text, r#"odoogate_capture_losses_total{reason="ring_full"}"#), Some(9.0), "{text}");
    assert_eq!(sample(&text, r#"odoogate_capture_losses_total{reason="truncated"}"#), Some(2.0), "{text}");
    assert_eq!(sample(&text, r#"odoogate_ebpf_unparsed_packets_total{reason="header_error"}"#), Some(1.0), "{text}");
}

#[test]
fn attached_programs_replace() {
    let metrics = Metrics::new();
    metrics.set_attached(&["tc ingress on lo".to_owned(), "tc egress on lo".to_owned()]);
    metrics.set_attached(&["tc ingress on eth0".to_owned()]);
    let text = metrics.encode();

    let attached = r#"odoogate_ebpf_program_attached{attachment="tc ingress on eth0"}"#;
    assert_eq!(sample(&text, attached), Some(1.0), "{text}");
    assert!(!text.contains("on lo"), "{text}");
}

#[test]
fn refresh_runs_before_encode() {
    let metrics = Metrics::new();
    metrics.refresh_with(|metrics| metrics.set_capture_stats(&CaptureStats { packets: 42, ..CaptureStats::default() }));
    let text = metrics.encode();

    assert_eq!(sample(&text, "odoogate_ebpf_packets_total"), Some(42.0), "{text}");
}

#[test]
fn steer_stats_copied_by_outcome() {
    let metrics = Metrics::new();
    metrics.set_steer_stats(&SteerStats { steered: 12, bypassed: 12, dropped: 0 });
    metrics.set_steer_stats(&SteerStats { steered: 15, bypassed: 14, dropped: 1 });
    let text = metrics.encode();

    assert_eq!(sample(&text, r#"odoogate_steering_connections_total{outcome="steered"}"#), Some(15.0), "{text}");
    assert_eq!(sample(&text, r#"odoogate_steering_connections_total{outcome="bypassed"}"#), Some(14.0), "{text}");
    assert_eq!(sample(&text, r#"odoogate_steering_connections_total{outcome="dropped"}"#), Some(1.0), "{text}");
}

#[test]
fn steering_absent_until_set() {
    let text = Metrics::new().encode();

    assert_eq!(sample(&text, r#"odoogate_steering_connections_total{outcome="steered"}"#), None, "{text}");
}
