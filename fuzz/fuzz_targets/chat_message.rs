//! A text frame on the control plane's event chat WebSocket, read as the socket reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roundtable_control_plane::chat::{MAX_CHARS, read_message};

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 (the socket library refuses others).
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    match read_message(frame) {
        Some(Ok(text)) => {
            assert!(!text.is_empty() && text.chars().count() <= MAX_CHARS);
            assert_eq!(text, text.trim());
        }
        Some(Err(sentence)) => assert!(!sentence.is_empty()),
        None => {}
    }
});
