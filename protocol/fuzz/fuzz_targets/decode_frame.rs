//! Fuzzes the inbound path exactly as the daemon and client run it: find frames
//! in a byte stream, decode each as a request and as a response. Nothing may
//! panic, and a request that decodes must re-encode to a frame that decodes to
//! the same request.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_protocol::{check_frame, decode_request, decode_response, Encoder, FrameCheck};

fuzz_target!(|data: &[u8]| {
    let mut stream = Bytes::copy_from_slice(data);
    let mut encoder = Encoder::new();
    loop {
        match check_frame(&stream, 1 << 20) {
            FrameCheck::Complete(len) => {
                let frame = stream.split_to(len);
                if let Ok(request) = decode_request(&frame) {
                    let again = Bytes::copy_from_slice(encoder.request(&request));
                    assert_eq!(decode_request(&again).expect("re-encoded request decodes"), request);
                }
                let _ = decode_response(&frame);
            }
            FrameCheck::Incomplete { .. } | FrameCheck::Invalid { .. } => break,
        }
    }
});
