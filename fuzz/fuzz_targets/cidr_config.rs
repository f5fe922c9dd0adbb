//! Arbitrary allowlist and trusted-proxy configuration text: parsing answers (ranges or a
//! typed error) and never panics; a parsed allowlist contains the network address of every
//! range it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_webhook::allowlist::IpAllowlist;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(nets) = tower_webhook::parse_cidrs(text) else {
        return;
    };
    let list = IpAllowlist::new(nets.clone());
    for net in &nets {
        assert!(list.contains(net.network()), "{net}");
        assert!(list.contains(net.broadcast()), "{net}");
    }
});
