//! An avatar upload as the control plane decodes it (`accounts::avatar::process`): any bytes a
//! host can post. Whatever is accepted must come out as the promised square PNG of at most
//! `SIDE` pixels; whatever is refused, with one of the problems the settings page words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roundtable_control_plane::accounts::avatar::{SIDE, process};

fuzz_target!(|data: &[u8]| {
    let Ok(png) = process(data) else {
        return;
    };
    let kept = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .expect("a kept avatar is a PNG that decodes");
    assert_eq!(kept.width(), kept.height(), "a kept avatar is square");
    assert!(kept.width() <= SIDE && kept.width() > 0, "{} px", kept.width());
});
