//! What an SDP offer must satisfy before str0m negotiates it: checks on the offer's text that
//! str0m 0.25 asserts on instead of refusing (see `lifecycle::accept_offer` for the panics left).

use std::collections::HashMap;

/// Why an offer is refused before negotiation, in words for the client.
pub fn check(offer: &str) -> Result<(), String> {
    one_meaning_per_payload_type(offer)
}

/// In one BUNDLE group a payload type names one format everywhere (RFC 8843 §9.1): the same
/// `a=rtpmap` and `a=fmtp` in every m-line that uses it. str0m locks each payload type once and
/// panics ("Pt locked multiple times") when two m-lines lock it to two different formats.
fn one_meaning_per_payload_type(offer: &str) -> Result<(), String> {
    // payload type → (kind of line, its text after the payload type)
    let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
    for line in offer.lines() {
        let line = line.trim_end_matches('\r');
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        for kind in ["rtpmap:", "fmtp:"] {
            let Some(rest) = attr.strip_prefix(kind) else {
                continue;
            };
            let (pt, value) = rest.split_once(' ').unwrap_or((rest, ""));
            match seen.insert((kind, pt), value) {
                Some(before) if before != value => {
                    return Err(format!(
                        "payload type {pt} has two {} lines that differ; in one bundle a \
                         payload type must mean one format",
                        kind.trim_end_matches(':')
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Chrome's offer to watch two slots (the committed fuzz seed, minus its mode byte).
    fn chrome_offer() -> String {
        let seed = include_bytes!("../../../fuzz/corpus/sdp_offer/chrome-whep-two-slots");
        String::from_utf8(seed[1..].to_vec()).unwrap()
    }

    #[test]
    fn a_browsers_offer_passes() {
        assert_eq!(check(&chrome_offer()), Ok(()));
    }

    /// Chrome's offer with H264 on payload type 116 twice, the first without its packetization
    /// mode and profile: the shape of the fuzzer's crash (str0m 0.25 panicked on it).
    pub(in crate::media) fn two_formats_on_one_payload_type() -> String {
        let offer = chrome_offer();
        let fmtp =
            "a=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f";
        let at = offer.find(fmtp).expect("the seed has H264 on 116");
        let mut changed = offer.clone();
        changed.replace_range(at..at + fmtp.len(), "a=fmtp:116 level-asymmetry-allowed=1");
        changed
    }

    #[test]
    fn a_payload_type_with_two_formats_is_refused() {
        let why = check(&two_formats_on_one_payload_type()).unwrap_err();
        assert!(why.contains("payload type 116"), "{why}");
    }
}
