//! Smoke test of the netem guest (testkit::vm): it boots, SSH works, and a netem delay on its eth0 shows up in
//! an HTTP request/reply through the forwarded port, then goes away when the qdisc is deleted.
//!
//! Needs what ./tests/run installs; `SIMIAN_SKIP_VM=1 ./tests/run` leaves these `vm_` tests out, saying so.

use std::time::Duration;

use testkit::vm::Guest;

const DELAY_MS: u64 = 100;
const SAMPLES: usize = 7;

/// The median of `SAMPLES` HTTP round trips to the guest.
fn median_round_trip(guest: &Guest) -> Duration {
    let mut times: Vec<Duration> =
        (0..SAMPLES).map(|_| guest.http_round_trip().expect("HTTP request to the guest")).collect();
    times.sort();
    times[SAMPLES / 2]
}

#[test]
fn vm_netem_delay_on_the_guest_shows_in_http_round_trips() {
    let guest = Guest::boot();
    eprintln!(
        "guest up in {:?}: ssh root@127.0.0.1:{} (http on {}), console log {}",
        guest.boot_time(),
        guest.ssh_port(),
        guest.http_port(),
        guest.console_log_path().display()
    );

    eprintln!("console:\n{}", guest.console_log().trim_end());

    let before = guest.ssh_ok(&["tc", "qdisc", "show", "dev", "eth0"]);
    eprintln!("qdisc before: {}", before.trim());
    assert!(!before.contains("netem"), "netem already on eth0: {before}");
    assert_eq!(guest.ssh_ok(&["sh", "-c", "echo $0; readlink /bin/sh"]).trim(), "sh\ndash");

    let base = median_round_trip(&guest);
    eprintln!("HTTP round trip without netem: {base:?}");

    guest
        .ssh_ok(&["tc", "qdisc", "add", "dev", "eth0", "root", "handle", "5117:", "netem", "delay", "100ms"]);
    let with = guest.ssh_ok(&["tc", "qdisc", "show", "dev", "eth0"]);
    eprintln!("qdisc with netem: {}", with.trim());
    assert!(with.contains("qdisc netem 5117: root") && with.contains("delay 100ms"), "{with}");

    let delayed = median_round_trip(&guest);
    eprintln!("HTTP round trip with netem delay {DELAY_MS}ms: {delayed:?}");
    assert!(
        delayed >= base + Duration::from_millis(DELAY_MS),
        "netem delay {DELAY_MS}ms did not show: {base:?} before, {delayed:?} with it"
    );

    guest.ssh_ok(&["tc", "qdisc", "del", "dev", "eth0", "root"]);
    let after = guest.ssh_ok(&["tc", "qdisc", "show", "dev", "eth0"]);
    eprintln!("qdisc after delete: {}", after.trim());
    assert!(!after.contains("netem"), "{after}");
    assert!(after.contains("fq_codel"), "the default qdisc after a delete is fq_codel: {after}");

    let restored = median_round_trip(&guest);
    eprintln!("HTTP round trip after delete: {restored:?}");
    assert!(
        restored + Duration::from_millis(DELAY_MS / 2) < delayed,
        "round trips did not fall back: {delayed:?} with netem, {restored:?} after delete"
    );
}

#[test]
fn vm_guest_runs_a_detached_command_after_the_ssh_session_ends() {
    let guest = Guest::boot();
    // What simian's dead-man switch does: a detached `sh -c 'sleep N; …'` that outlives the SSH session.
    guest.ssh_ok(&["sh", "-c", "setsid nohup sh -c 'sleep 1; echo fired > /tmp/switch' >/dev/null 2>&1 &"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(guest.ssh_ok(&["cat", "/tmp/switch"]).trim(), "fired");
}
