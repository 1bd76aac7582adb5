//! FIX tag=value framing: `8=FIX.4.4|9=len|35=…|…|10=sum|` with `|` = SOH (0x01).
//!
//! [`decode`] finds one message at the front of a buffer and checks what the session layer must
//! not trust blindly: BeginString, BodyLength (the body ends exactly where `10=` starts), the
//! CheckSum (sum of every byte before `10=`, mod 256, three digits) and a size bound. Bytes that
//! fail are *garbled*: the session ignores them without consuming a sequence number (FIX 4.4
//! vol. 2, "Garbled messages") and [`decode`] tells how many bytes to skip to the next `8=FIX`.
//! A well-framed message with a bad field (no value, a tag that is not a number, a control
//! character, too many fields, MsgType not first) is a message with a [`Problem`]: the session
//! consumes its sequence number and answers it with a Reject — were it ignored, the counterparty
//! would resend the same bytes forever. [`Message::encode`] writes BodyLength and CheckSum
//! itself. Pure; no I/O.

/// The field delimiter.
pub const SOH: u8 = 0x01;
/// Most fields in one message: bounds what a message costs decoded (≈ 40 B per field), whatever
/// its bytes (a body of one-character fields decodes to ~10× its size).
pub const MAX_FIELDS: usize = 512;
/// The only BeginString spoken.
pub const BEGIN_STRING: &str = "FIX.4.4";
const PREFIX: &[u8] = b"8=FIX.4.4\x019=";

/// One FIX message: its fields in wire order, without BeginString, BodyLength and CheckSum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    fields: Vec<(u32, String)>,
    /// A well-framed message with a bad field (the field is left out): the session answers it
    /// with a Reject and consumes its sequence number, unlike a garbled one.
    pub problem: Option<Problem>,
}

/// What is wrong with a field of a well-framed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// RefTagID (371), when the tag could be read.
    pub tag: Option<u32>,
    /// SessionRejectReason (373).
    pub reason: u32,
    pub text: String,
}

impl Message {
    /// An empty message of type `msg_type` (tag 35).
    pub fn new(msg_type: &str) -> Self {
        Message {
            fields: vec![(35, msg_type.to_string())],
            problem: None,
        }
    }

    /// MsgType (35); empty when missing.
    pub fn msg_type(&self) -> &str {
        self.get(35).unwrap_or("")
    }

    /// The first value of `tag`.
    pub fn get(&self, tag: u32) -> Option<&str> {
        self.fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `tag` as an unsigned integer (`None` when absent or not one).
    pub fn get_u64(&self, tag: u32) -> Option<u64> {
        let v = self.get(tag)?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }

    /// Whether a Y/N field is `Y`.
    pub fn flag(&self, tag: u32) -> bool {
        self.get(tag) == Some("Y")
    }

    /// Appends `tag=value` (values are printable ASCII: anything else is replaced by `?`).
    pub fn push(&mut self, tag: u32, value: impl Into<String>) -> &mut Self {
        let mut v: String = value.into();
        if !v.bytes().all(printable) {
            v = v
                .chars()
                .map(|c| {
                    if c.is_ascii() && printable(c as u8) {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
        }
        self.fields.push((tag, v));
        self
    }

    /// Sets `tag` (replacing every previous value) or appends it.
    pub fn set(&mut self, tag: u32, value: impl Into<String>) -> &mut Self {
        self.fields.retain(|(t, _)| *t != tag);
        self.push(tag, value)
    }

    /// Sets a header field (PossDupFlag, OrigSendingTime) right after the standard header fields
    /// at the front (35, 49, 56, 34, 52, 43, 122), where a strict counterparty expects it.
    pub fn set_after_header(&mut self, tag: u32, value: impl Into<String>) -> &mut Self {
        const HEADER: [u32; 7] = [35, 49, 56, 34, 52, 43, 122];
        self.fields.retain(|(t, _)| *t != tag);
        let at = self
            .fields
            .iter()
            .position(|(t, _)| !HEADER.contains(t))
            .unwrap_or(self.fields.len());
        let len = self.fields.len();
        self.push(tag, value);
        let f = self.fields.remove(len);
        self.fields.insert(at, f);
        self
    }

    /// `body` (its MsgType and fields) behind the standard header: SenderCompID (49),
    /// TargetCompID (56), MsgSeqNum (34), SendingTime (52).
    pub fn with_header(
        body: &Message,
        sender: &str,
        target: &str,
        seq: u64,
        sending_time: &str,
    ) -> Message {
        let mut out = Message::new(body.msg_type());
        out.push(49, sender)
            .push(56, target)
            .push(34, seq.to_string())
            .push(52, sending_time);
        out.fields.extend(body.fields.iter().skip(1).cloned());
        out
    }

    /// Removes every value of `tag`.
    pub fn remove(&mut self, tag: u32) {
        self.fields.retain(|(t, _)| *t != tag);
    }

    /// Every field in wire order.
    pub fn fields(&self) -> &[(u32, String)] {
        &self.fields
    }

    /// The wire form: header fields first in the order FIX requires (35, then whatever the caller
    /// put first: 49, 56, 34, 52 …), BodyLength and CheckSum computed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let mut body = Vec::with_capacity(128);
        for (tag, value) in &self.fields {
            let _ = write!(body, "{tag}=");
            body.extend_from_slice(value.as_bytes());
            body.push(SOH);
        }
        let start = out.len();
        out.extend_from_slice(PREFIX);
        let _ = write!(out, "{}", body.len());
        out.push(SOH);
        out.extend_from_slice(&body);
        let sum = checksum(&out[start..]);
        let _ = write!(out, "10={sum:03}");
        out.push(SOH);
    }

    /// The wire form with `|` for SOH (logs and tests).
    pub fn to_text(&self) -> String {
        let mut out = Vec::new();
        self.encode(&mut out);
        String::from_utf8_lossy(&out).replace('\x01', "|")
    }
}

fn printable(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// A UTCTimestamp with milliseconds (`YYYYMMDD-HH:MM:SS.sss`) for `ms` since the Unix epoch.
pub fn utc_timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y%m%d-%H:%M:%S%.3f")
        .to_string()
}

/// Sum of `bytes` mod 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// What [`decode`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Not a whole message yet: read more.
    Incomplete,
    /// A valid message that took `len` bytes.
    Message { message: Message, len: usize },
    /// Not a valid message: skip `skip` bytes (to the next `8=FIX` or all of it) and go on.
    Garbled { skip: usize, reason: String },
    /// The peer announced a body larger than allowed: no point reading on.
    TooLarge { announced: usize },
}

/// Decodes the message at the front of `buf`; `max_body` bounds BodyLength.
pub fn decode(buf: &[u8], max_body: usize) -> Decoded {
    if buf.is_empty() {
        return Decoded::Incomplete;
    }
    let garbled = |reason: String| Decoded::Garbled {
        skip: resync(buf),
        reason,
    };
    let n = PREFIX.len().min(buf.len());
    if buf[..n] != PREFIX[..n] {
        return garbled("does not start with 8=FIX.4.4|9=".into());
    }
    if buf.len() < PREFIX.len() {
        return Decoded::Incomplete;
    }
    // BodyLength digits.
    let digits_start = PREFIX.len();
    let mut i = digits_start;
    while i < buf.len() && buf[i].is_ascii_digit() && i - digits_start < 9 {
        i += 1;
    }
    if i == buf.len() {
        return Decoded::Incomplete;
    }
    if i == digits_start || buf[i] != SOH {
        return garbled("BodyLength (9) is not a number".into());
    }
    let body_len: usize = match std::str::from_utf8(&buf[digits_start..i])
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(n) => n,
        None => return garbled("BodyLength (9) is not a number".into()),
    };
    if body_len > max_body {
        return Decoded::TooLarge {
            announced: body_len,
        };
    }
    let body_start = i + 1;
    let body_end = body_start + body_len;
    let total = body_end + 7; // "10=nnn" + SOH
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let trailer = &buf[body_end..total];
    if !(trailer.starts_with(b"10=")
        && trailer[3..6].iter().all(u8::is_ascii_digit)
        && trailer[6] == SOH)
    {
        return garbled(format!(
            "CheckSum (10) not where BodyLength {body_len} says the body ends"
        ));
    }
    let announced: u32 = std::str::from_utf8(&trailer[3..6])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u32::MAX);
    let actual = checksum(&buf[..body_end]);
    if announced != u32::from(actual) {
        return garbled(format!(
            "CheckSum {announced:03} but the bytes sum to {actual:03}"
        ));
    }
    let body = &buf[body_start..body_end];
    if body.last() != Some(&SOH) {
        return garbled("body does not end with SOH".into());
    }
    let (fields, mut problem) = parse_fields(body);
    if fields.first().map(|(t, _)| *t) != Some(35) {
        problem.get_or_insert(Problem {
            tag: Some(35),
            reason: 14,
            text: "MsgType (35) is not the first field of the body".into(),
        });
    }
    Decoded::Message {
        message: Message { fields, problem },
        len: total,
    }
}

/// Where the next message may start: the next `8=FIX` after the first byte, or the end.
fn resync(buf: &[u8]) -> usize {
    buf.windows(5)
        .skip(1)
        .position(|w| w == b"8=FIX")
        .map_or(buf.len(), |p| p + 1)
}

/// The fields of a body that ends with SOH, and the first problem of a field that was left out.
fn parse_fields(body: &[u8]) -> (Vec<(u32, String)>, Option<Problem>) {
    let mut fields = Vec::with_capacity(16);
    let mut problem = None;
    let mut note = |p: Problem| {
        problem.get_or_insert(p);
    };
    for field in body[..body.len() - 1].split(|&b| b == SOH) {
        if fields.len() == MAX_FIELDS {
            note(Problem {
                tag: None,
                reason: 99,
                text: format!("more than {MAX_FIELDS} fields"),
            });
            break;
        }
        let Some(eq) = field.iter().position(|&b| b == b'=') else {
            note(Problem {
                tag: None,
                reason: 0,
                text: format!("field without '=': {:?}", String::from_utf8_lossy(field)),
            });
            continue;
        };
        let (tag, value) = (&field[..eq], &field[eq + 1..]);
        let Some(tag) = std::str::from_utf8(tag)
            .ok()
            .filter(|t| !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|&t| t > 0)
        else {
            note(Problem {
                tag: None,
                reason: 0,
                text: format!("tag {:?} is not a number", String::from_utf8_lossy(tag)),
            });
            continue;
        };
        if value.is_empty() {
            note(Problem {
                tag: Some(tag),
                reason: 4,
                text: format!("tag {tag} has no value"),
            });
            continue;
        }
        // Text beyond ASCII (UTF-8 in a Text field) is kept; control characters are not data.
        if value.iter().any(|&b| b < 0x20 || b == 0x7f) {
            note(Problem {
                tag: Some(tag),
                reason: 6,
                text: format!("tag {tag} has a control character"),
            });
            continue;
        }
        fields.push((tag, String::from_utf8_lossy(value).into_owned()));
    }
    (fields, problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(text: &str) -> Vec<u8> {
        text.replace('|', "\x01").into_bytes()
    }

    #[test]
    fn decodes_a_message_written_by_hand_and_checks_its_trailer() {
        // A Heartbeat whose BodyLength and CheckSum were computed independently (Python:
        // len(body), sum(bytes) % 256).
        let text = "8=FIX.4.4|9=53|35=0|49=KAPPA|56=T0001|34=2|52=20261126-21:00:00.000|10=062|";
        let bytes = wire(text);
        assert_eq!(checksum(&bytes[..bytes.len() - 7]), 62);
        let Decoded::Message { message, len } = decode(&bytes, 4096) else {
            panic!("{:?}", decode(&bytes, 4096));
        };
        assert_eq!(len, bytes.len());
        assert_eq!(message.msg_type(), "0");
        assert_eq!(message.get(49), Some("KAPPA"));
        assert_eq!(message.get_u64(34), Some(2));
        assert_eq!(message.to_text(), text);
    }

    #[test]
    fn garbled_messages_are_skipped_to_the_next_begin_string() {
        let good =
            wire("8=FIX.4.4|9=53|35=0|49=KAPPA|56=T0001|34=2|52=20261126-21:00:00.000|10=062|");
        // Wrong checksum, then the good message.
        let mut bad =
            wire("8=FIX.4.4|9=53|35=0|49=KAPPA|56=T0001|34=2|52=20261126-21:00:00.000|10=063|");
        let bad_len = bad.len();
        bad.extend_from_slice(&good);
        match decode(&bad, 4096) {
            Decoded::Garbled { skip, reason } => {
                assert_eq!(skip, bad_len, "{reason}");
                assert!(reason.contains("CheckSum"), "{reason}");
                assert!(matches!(
                    decode(&bad[skip..], 4096),
                    Decoded::Message { .. }
                ));
            }
            other => panic!("{other:?}"),
        }
        // BodyLength too short: the trailer is not where it says.
        let short =
            wire("8=FIX.4.4|9=50|35=0|49=KAPPA|56=T0001|34=2|52=20261126-21:00:00.000|10=066|");
        assert!(matches!(decode(&short, 4096), Decoded::Garbled { .. }));
        // Junk before a message.
        let mut junk = b"GET / HTTP/1.1\r\n".to_vec();
        junk.extend_from_slice(&good);
        assert!(matches!(
            decode(&junk, 4096),
            Decoded::Garbled { skip: 16, .. }
        ));
        // Other versions are not spoken.
        assert!(matches!(
            decode(&wire("8=FIX.4.2|9=5|35=0|10=000|"), 4096),
            Decoded::Garbled { .. }
        ));
        // Too many fields: garbled, however small.
        let mut many = Message::new("0");
        for _ in 0..MAX_FIELDS {
            many.push(58, "x");
        }
        let mut bytes = Vec::new();
        many.encode(&mut bytes);
        match decode(&bytes, 1 << 20) {
            Decoded::Message { message, .. } => {
                assert_eq!(message.fields().len(), MAX_FIELDS);
                assert_eq!(message.problem.unwrap().reason, 99);
            }
            other => panic!("{other:?}"),
        }
        many.remove(58);
        many.push(58, "x");
        bytes.clear();
        many.encode(&mut bytes);
        assert!(
            matches!(decode(&bytes, 1 << 20), Decoded::Message { message, .. } if message.problem.is_none())
        );
        // An announced body over the bound stops reading.
        assert_eq!(
            decode(&wire("8=FIX.4.4|9=99999|35=0|"), 4096),
            Decoded::TooLarge { announced: 99999 }
        );
    }

    /// A well-framed message with a bad field is a message with a problem (the session rejects
    /// it and moves on), not garbled bytes (which would be asked for again, forever).
    #[test]
    fn bad_fields_in_a_well_framed_message_are_problems_not_garbling() {
        let frame = |body: &[u8]| {
            let mut out = format!("8=FIX.4.4\x019={}\x01", body.len()).into_bytes();
            out.extend_from_slice(body);
            let sum = checksum(&out);
            out.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
            out
        };
        for (body, reason, tag) in [
            (&b"35=D\x0134=7\x0158=\x01"[..], 4, Some(58)),
            (b"35=D\x0134=7\x01x=1\x01", 0, None),
            (b"35=D\x0134=7\x0158=a\x02b\x01", 6, Some(58)),
            (b"34=7\x0135=D\x01", 14, Some(35)),
        ] {
            let Decoded::Message { message, len } = decode(&frame(body), 4096) else {
                panic!("{body:?}");
            };
            assert_eq!(len, frame(body).len());
            assert_eq!(
                message.get_u64(34),
                Some(7),
                "the sequence number is still read"
            );
            let p = message.problem.expect("a problem");
            assert_eq!((p.reason, p.tag), (reason, tag), "{body:?}");
        }
        // UTF-8 in a Text field is text.
        let Decoded::Message { message, .. } =
            decode(&frame("35=D\x0158=Café\x01".as_bytes()), 4096)
        else {
            panic!()
        };
        assert_eq!((message.get(58), &message.problem), (Some("Café"), &None));
    }

    #[test]
    fn partial_input_asks_for_more() {
        let good =
            wire("8=FIX.4.4|9=53|35=0|49=KAPPA|56=T0001|34=2|52=20261126-21:00:00.000|10=062|");
        for cut in 0..good.len() {
            assert_eq!(
                decode(&good[..cut], 4096),
                Decoded::Incomplete,
                "cut at {cut}"
            );
        }
    }

    fn value() -> impl Strategy<Value = String> {
        "[ -~]{1,20}".prop_filter("no SOH", |s| !s.contains('\x01'))
    }

    proptest! {
        /// Whatever is encoded decodes to itself, in one piece or fed byte by byte.
        #[test]
        fn encode_then_decode_is_identity(
            msg_type in "[0-9A-Za-z]{1,2}",
            fields in proptest::collection::vec((1u32..10_000, value()), 0..20),
        ) {
            let mut m = Message::new(&msg_type);
            for (t, v) in &fields {
                m.push(*t, v.clone());
            }
            let mut bytes = Vec::new();
            m.encode(&mut bytes);
            match decode(&bytes, 1 << 20) {
                Decoded::Message { message, len } => {
                    prop_assert_eq!(len, bytes.len());
                    prop_assert_eq!(message, m);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        /// No input makes the decoder panic or claim more bytes than it was given, and a garbled
        /// report always skips at least one byte (no livelock).
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            match decode(&bytes, 4096) {
                Decoded::Message { len, .. } => prop_assert!(len <= bytes.len()),
                Decoded::Garbled { skip, .. } => prop_assert!(skip >= 1 && skip <= bytes.len()),
                Decoded::Incomplete | Decoded::TooLarge { .. } => {}
            }
        }

        /// Any single corrupted byte of a valid message is refused (a one-byte change moves
        /// the sum by a non-zero amount mod 256, or breaks the framing).
        #[test]
        fn a_corrupted_byte_is_never_accepted(pos in 0usize..200, delta in 1u8..=255) {
            let good = wire("8=FIX.4.4|9=53|35=0|49=KAPPA|56=T0001|34=2|52=20261126-21:00:00.000|10=062|");
            let pos = pos % good.len();
            let mut bad = good.clone();
            bad[pos] = bad[pos].wrapping_add(delta);
            let accepted = matches!(decode(&bad, 4096), Decoded::Message { .. });
            prop_assert!(!accepted, "byte {} + {} accepted", pos, delta);
        }
    }
}
