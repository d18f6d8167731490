//! Turning framed input into audit events, or into `errors` records.
//!
//! Shared by every source that reads JSON: one frame (a line or a document)
//! becomes zero or more events (an `EventList` holds many) and zero or more
//! [`InputFailure`]s, each naming what was wrong.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::JoinHandle;

use auditflow_core::ack::Finalizer;
use auditflow_core::component::InputFailure;
use auditflow_core::event::{
    decode_document_each, decode_document_owned, Event, EventError, MessageOrigin, Payload,
};
pub use auditflow_core::topology::inline::decode_parallelism;
use auditflow_core::topology::inline::{InlineChain, TransformErrors};

use crate::framing::{DocumentAssembler, Frame, LineFramer};

/// The events and failures decoded from a group of frames.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The audit events, in input order.
    pub events: Vec<Event>,
    /// What could not be decoded, in input order.
    pub failures: Vec<InputFailure>,
    /// The `errors` records of the transforms run on the decoding thread.
    pub transform_errors: TransformErrors,
}

/// Decodes groups of frames on blocking threads, several at once, handing the
/// results back in submission order.
///
/// Decoding is most of a JSON source's work; with two groups in flight, a
/// source reads and frames the next chunk while the previous ones decode on
/// the other cores, and the output order stays the input order. The
/// transforms the topology runs inline after the source run on the same
/// thread, over every 256 events (`INLINE_GROUP`) as soon as they are decoded.
pub struct OrderedDecoder {
    source_id: Arc<str>,
    parallelism: usize,
    inline: Option<Arc<InlineChain>>,
    pending: VecDeque<JoinHandle<Decoded>>,
}

impl OrderedDecoder {
    /// A decoder keeping at most `parallelism` groups in flight, running
    /// `inline` over the events it decodes (see [`OrderedDecoder`]).
    pub fn new(
        source_id: Arc<str>,
        parallelism: usize,
        inline: Option<Arc<InlineChain>>,
    ) -> OrderedDecoder {
        OrderedDecoder {
            source_id,
            parallelism: parallelism.max(1),
            inline,
            pending: VecDeque::new(),
        }
    }

    /// Starts decoding a group of frames.
    pub fn submit(&mut self, frames: Vec<Frame>) {
        self.submit_from(frames, Vec::new());
    }

    /// Starts decoding a group of frames read from broker messages: each
    /// `(count, origin)` of `origins` is the next `count` frames' message. Their
    /// events carry the origin (conditions read it as `kafka.*`), and their
    /// failures name the message (`topic[partition] at offset N`).
    pub fn submit_from(&mut self, frames: Vec<Frame>, origins: FrameOrigins) {
        let source_id = self.source_id.clone();
        let inline = self.inline.clone();
        self.pending.push_back(tokio::task::spawn_blocking(move || {
            decode_group(frames, &origins, &source_id, inline.as_deref())
        }));
    }

    /// Whether as many groups are in flight as allowed (submit no more before taking one).
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.parallelism
    }

    /// Whether no group is in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The oldest group's result, waiting for it; `None` when nothing is in flight.
    ///
    /// An error when the group's thread panicked (a bug in the decoder or in a
    /// transform run inline): its events are lost to this run, so the source
    /// must stop with the error (as a panicking transform task stops the
    /// pipeline) instead of acknowledging the group's lines as done.
    ///
    /// Cancel-safe: the group stays queued until its result has been returned.
    pub async fn next(&mut self) -> Option<anyhow::Result<Decoded>> {
        let handle = self.pending.front_mut()?;
        let result = handle.await;
        self.pending.pop_front();
        Some(result.map_err(|error| {
            anyhow::anyhow!(
                "decoding a group of lines (or a transform run on its thread) failed unexpectedly: {error}; the source stops, and its lines are read again at the next start"
            )
        }))
    }
}

/// How many decoded events the inline transforms are given at a time: their
/// texts and headers (a few hundred KB) are still in the core's L2 cache when
/// the transforms read them, which a whole turn of the file source (about
/// 1 MiB of lines) would not be.
const INLINE_GROUP: usize = 256;

/// The broker messages of a group of frames, in order: how many frames each holds, and where it was read.
pub type FrameOrigins = Vec<(usize, Arc<MessageOrigin>)>;

/// Decodes a group of frames, running `inline` over every [`INLINE_GROUP`] events decoded.
fn decode_group(
    frames: Vec<Frame>,
    origins: &FrameOrigins,
    source_id: &Arc<str>,
    inline: Option<&InlineChain>,
) -> Decoded {
    let mut decoded = Decoded::default();
    let mut origin_of_frame = origins
        .iter()
        .flat_map(|(count, origin)| std::iter::repeat_n(origin, *count));
    let Some(inline) = inline else {
        for frame in frames {
            let origin = origin_of_frame.next();
            decode_frame_from(
                frame,
                origin,
                source_id,
                &mut decoded.events,
                &mut decoded.failures,
            );
        }
        return decoded;
    };
    let mut group = Vec::with_capacity(INLINE_GROUP);
    for frame in frames {
        let origin = origin_of_frame.next();
        decode_frame_from(frame, origin, source_id, &mut group, &mut decoded.failures);
        if group.len() >= INLINE_GROUP {
            decoded.run_inline(inline, &mut group);
        }
    }
    if !group.is_empty() {
        decoded.run_inline(inline, &mut group);
    }
    decoded
}

impl Decoded {
    /// Attaches a batch's acknowledgement handle to its events and to the
    /// `errors` records of the transforms run inline (the source's own failures
    /// take it when they are sent, [`SourceContext::send_failures`]).
    ///
    /// [`SourceContext::send_failures`]: auditflow_core::component::SourceContext::send_failures
    pub fn set_finalizer(&mut self, finalizer: &Finalizer) {
        for event in &mut self.events {
            event.meta.finalizer = Some(finalizer.clone());
        }
        self.transform_errors.set_finalizer(finalizer);
    }

    /// Runs the inline transforms over `group` (emptied), keeping what they give.
    fn run_inline(&mut self, inline: &InlineChain, group: &mut Vec<Event>) {
        let (kept, errors) =
            inline.apply(std::mem::replace(group, Vec::with_capacity(INLINE_GROUP)));
        self.events.extend(kept);
        self.transform_errors.append(errors);
    }
}

/// Frames and decodes a byte stream on the calling thread, chunk by chunk:
/// NDJSON, or JSON documents (pretty-printed or not) one after another, as the
/// `stdin` source reads them. For commands that read input outside a pipeline.
#[derive(Debug)]
pub struct StreamDecoder {
    source_id: Arc<str>,
    framer: LineFramer,
    assembler: DocumentAssembler,
}

impl StreamDecoder {
    /// A decoder whose events name `source_id`, refusing documents longer than `max_bytes`.
    pub fn new(source_id: Arc<str>, max_bytes: usize) -> StreamDecoder {
        StreamDecoder {
            source_id,
            framer: LineFramer::new(max_bytes),
            assembler: DocumentAssembler::new(max_bytes),
        }
    }

    /// Decodes what `chunk` completes.
    pub fn push(&mut self, chunk: &[u8]) -> Decoded {
        let mut lines = Vec::new();
        self.framer.push(chunk, &mut lines);
        self.decode_lines(lines, false)
    }

    /// Decodes what is left at the end of the input.
    pub fn finish(&mut self) -> Decoded {
        let lines = self.framer.finish().into_iter().collect();
        self.decode_lines(lines, true)
    }

    fn decode_lines(&mut self, lines: Vec<Frame>, end: bool) -> Decoded {
        let mut documents: Vec<Frame> = lines
            .into_iter()
            .filter_map(|line| self.assembler.push_line(line))
            .collect();
        if end {
            documents.extend(self.assembler.finish());
        }
        let mut decoded = Decoded::default();
        for document in documents {
            decode_frame(
                document,
                &self.source_id,
                &mut decoded.events,
                &mut decoded.failures,
            );
        }
        decoded
    }
}

/// Decodes one frame of a broker message (if `origin` says which), appending its events and failures.
fn decode_frame_from(
    frame: Frame,
    origin: Option<&Arc<MessageOrigin>>,
    source_id: &Arc<str>,
    events: &mut Vec<Event>,
    failures: &mut Vec<InputFailure>,
) {
    let Some(origin) = origin else {
        return decode_frame(frame, source_id, events, failures);
    };
    let (events_before, failures_before) = (events.len(), failures.len());
    decode_frame(frame, source_id, events, failures);
    for event in events.iter_mut().skip(events_before) {
        event.meta.origin = Some(origin.clone());
    }
    for failure in failures.iter_mut().skip(failures_before) {
        failure.message = format!(
            "the message of {}[{}] at offset {}: {}",
            origin.topic, origin.partition, origin.offset, failure.message
        );
    }
}

/// Decodes one frame, appending its events and failures.
pub fn decode_frame(
    frame: Frame,
    source_id: &Arc<str>,
    events: &mut Vec<Event>,
    failures: &mut Vec<InputFailure>,
) {
    match frame {
        Frame::Complete(bytes) => decode_bytes(Vec::from(bytes), source_id, events, failures),
        Frame::TooLong { prefix, length } => failures.push(InputFailure {
            error_type: "too_large",
            message: format!(
                "input of {length} bytes is longer than max_line_bytes; raise max_line_bytes if such events are expected"
            ),
            input: String::from_utf8_lossy(&prefix).into_owned(),
        }),
    }
}

/// Decodes the bytes of one line or document.
pub fn decode_bytes(
    bytes: Vec<u8>,
    source_id: &Arc<str>,
    events: &mut Vec<Event>,
    failures: &mut Vec<InputFailure>,
) {
    let text = match utf8_text(bytes) {
        Ok(text) => text,
        Err(failure) => {
            failures.push(failure);
            return;
        }
    };
    if text.trim().is_empty() {
        return;
    }
    let decoded = decode_document_each(text, |item| match item {
        Ok(event) => events.push(Event::new(
            Payload::Audit(Arc::new(event)),
            source_id.clone(),
        )),
        Err(item) => failures.push(failure(&item.error, &item.input)),
    });
    if let Err((error, text)) = decoded {
        failures.push(failure(&error, &text));
    }
}

/// Decodes one document (an `Event` or an `EventList`) as a whole: all its items
/// become events, or, if any is not a valid audit event, none does.
///
/// For a source whose client must learn that its request was refused (the
/// webhook source answers 400): the failure names the first bad item, its
/// position, and how many are bad; its `input` is that item's text (or the
/// document's, when the document as a whole is unusable).
pub fn decode_document_whole(
    bytes: Vec<u8>,
    source_id: &Arc<str>,
) -> Result<Vec<Event>, InputFailure> {
    let text = utf8_text(bytes)?;
    if text.trim().is_empty() {
        return Err(InputFailure {
            error_type: "invalid_json",
            message: "the body is empty; send an audit Event or EventList as JSON".to_string(),
            input: String::new(),
        });
    }
    let items = decode_document_owned(text).map_err(|(error, text)| failure(&error, &text))?;
    let total = items.len();
    let mut events = Vec::with_capacity(total);
    let mut first_bad = None;
    let mut bad = 0usize;
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Ok(event) => events.push(Event::new(
                Payload::Audit(Arc::new(event)),
                source_id.clone(),
            )),
            Err(item) => {
                bad += 1;
                first_bad.get_or_insert((index, item));
            }
        }
    }
    match first_bad {
        None => Ok(events),
        Some((index, item)) => Err(InputFailure {
            error_type: item.error.kind(),
            message: format!(
                "{bad} of the {total} items of the EventList are not valid audit events; the first is item {index} (counting from 0): {}",
                item.error
            ),
            input: item.input,
        }),
    }
}

/// The bytes as text, or a failure naming where they stop being UTF-8.
fn utf8_text(bytes: Vec<u8>) -> Result<String, InputFailure> {
    String::from_utf8(bytes).map_err(|error| InputFailure {
        error_type: "invalid_utf8",
        message: format!(
            "invalid UTF-8 at byte {}; audit events are UTF-8 JSON",
            error.utf8_error().valid_up_to()
        ),
        input: String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

fn failure(error: &EventError, input: &str) -> InputFailure {
    InputFailure {
        error_type: error.kind(),
        message: error.to_string(),
        input: input.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_events_or_failures() {
        let id: Arc<str> = "in".into();
        let mut events = Vec::new();
        let mut failures = Vec::new();
        let good = br#"{"auditID":"a","stage":"ResponseComplete","verb":"get"}"#.to_vec();
        decode_frame(
            Frame::Complete(good.into()),
            &id,
            &mut events,
            &mut failures,
        );
        decode_frame(
            Frame::Complete(b"nope".to_vec().into()),
            &id,
            &mut events,
            &mut failures,
        );
        decode_frame(
            Frame::Complete(vec![b'{', 0xff, b'}'].into()),
            &id,
            &mut events,
            &mut failures,
        );
        decode_frame(
            Frame::Complete(b"  ".to_vec().into()),
            &id,
            &mut events,
            &mut failures,
        );
        let too_long = Frame::TooLong {
            prefix: b"{".to_vec(),
            length: 10,
        };
        decode_frame(too_long, &id, &mut events, &mut failures);
        assert_eq!(events.len(), 1);
        let kinds: Vec<&str> = failures.iter().map(|f| f.error_type).collect();
        assert_eq!(kinds, vec!["invalid_json", "invalid_utf8", "too_large"]);
    }

    #[test]
    fn a_whole_document_is_all_events_or_one_failure_naming_the_first_bad_item() {
        let id: Arc<str> = "in".into();
        let good = r#"{"auditID":"a","stage":"ResponseComplete","verb":"get"}"#;
        let list = format!(r#"{{"kind":"EventList","items":[{good},{good}]}}"#);
        let events = decode_document_whole(list.into_bytes(), &id).map(|e| e.len());
        assert_eq!(events, Ok(2));
        let list =
            format!(r#"{{"kind":"EventList","items":[{good},{{"auditID":"b"}},{good},[1]]}}"#);
        let failure = decode_document_whole(list.into_bytes(), &id).err();
        let failure = failure.expect("a list with bad items is refused");
        assert!(
            failure.message.starts_with("2 of the 4 items"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("item 1 (counting from 0)"),
            "{}",
            failure.message
        );
        assert_eq!(failure.input, r#"{"auditID":"b"}"#);
        let failure = decode_document_whole(b"{\"kind\":".to_vec(), &id).err();
        assert_eq!(failure.map(|f| f.error_type), Some("invalid_json"));
        let failure = decode_document_whole(b" ".to_vec(), &id).err();
        assert!(failure.is_some_and(|f| f.message.contains("empty")));
    }

    #[test]
    fn a_whole_pretty_printed_list_with_escapes_and_unicode_keeps_every_item() {
        let id: Arc<str> = "in".into();
        let first = r#"{"auditID":"\u00e9t\u00e9","stage":"ResponseComplete","verb":"get","requestObject":{"note":"caf\u00e9 \"ünï\" [ ] { }","items":[[{}]]}}"#;
        let second =
            r#"{"auditID":"ü","stage":"Panic","verb":"create","user":{"username":"a\\b"}}"#;
        let list = format!(
            "{{\n  \"kind\": \"EventList\",\n  \"apiVersion\": \"audit.k8s.io/v1\",\n  \"items\": [\n    {first},\n    {}\n  ]\n}}\n",
            second.replace(",\"", ",\n      \"")
        );
        let events = decode_document_whole(list.into_bytes(), &id).expect("a valid list");
        let audit: Vec<&auditflow_core::event::AuditEvent> =
            events.iter().filter_map(Event::as_audit).collect();
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[0].header().audit_id(), "été");
        assert_eq!(audit[0].as_json(), first);
        assert_eq!(
            audit[0].request_object(),
            Some(r#"{"note":"caf\u00e9 \"ünï\" [ ] { }","items":[[{}]]}"#)
        );
        assert_eq!(audit[1].header().user().username(), "a\\b");
        assert_eq!(audit[1].as_json(), second, "made one line again");
    }

    #[tokio::test]
    async fn a_group_whose_thread_panicked_is_an_error_not_an_empty_group() {
        let mut decoder = OrderedDecoder::new("in".into(), 2, None);
        decoder.submit(vec![Frame::Complete(
            br#"{"auditID":"a","stage":"ResponseComplete","verb":"get"}"#
                .to_vec()
                .into(),
        )]);
        decoder
            .pending
            .push_back(tokio::task::spawn_blocking(|| panic!("a bug")));
        let first = decoder
            .next()
            .await
            .map(|group| group.map(|g| g.events.len()));
        assert!(matches!(first, Some(Ok(1))));
        let second = decoder.next().await.and_then(Result::err);
        let message = second.map(|error| error.to_string()).unwrap_or_default();
        assert!(message.contains("the source stops"), "{message}");
        assert!(decoder.next().await.is_none());
    }

    #[test]
    fn a_bad_list_item_is_reported_with_its_own_text() {
        let id: Arc<str> = "in".into();
        let good = r#"{"auditID":"a","stage":"ResponseComplete","verb":"get"}"#;
        let list = format!(r#"{{"kind":"EventList","items":[{good},{{"auditID":"b"}}]}}"#);
        let mut events = Vec::new();
        let mut failures = Vec::new();
        decode_bytes(list.into_bytes(), &id, &mut events, &mut failures);
        assert_eq!(events.len(), 1);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].input, r#"{"auditID":"b"}"#);
    }
}
