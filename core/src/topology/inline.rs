//! Stateless transforms run on a source's decoding threads.
//!
//! A JSON source (`stdin`, `file`) decodes groups of lines on blocking
//! threads, several at once. When the only reader of the source's events is a
//! transform that keeps no state from one event to the next (see
//! [`TransformConfig::runs_inline`]: `filter`, `audit_policy`, `redact`,
//! `timeshift`) and the source is that transform's only input, the topology
//! runs the transform on the decoding thread, over every 256 events as soon
//! as they are decoded, instead of in a task of its own. A chain of such transforms (a
//! policy, then redaction) runs as one [`InlineChain`].
//!
//! What that buys: each event is still in the cache of the core that decoded
//! it when the transforms read it (a transform task on another core reads
//! every header from the other core's cache), the transforms' work spreads over
//! every decoding thread, and the events skip a channel.
//!
//! What stays the same: the transforms' metrics (received, sent, discarded,
//! errors) count as they do for a task, their `errors` outputs carry the same
//! records (the source sends them, with its batch's acknowledgement handle),
//! and every event leaves in input order. What differs: an inlined transform's
//! input buffer gauge stays at 0 (it has no channel).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ack::Finalizer;
use crate::component::{Transform, TransformConfig, TransformContext, TransformOutput};
use crate::config::graph::OutputRef;
use crate::config::{ComponentConfig, ComponentEntry, PipelineConfig};
use crate::event::Event;
use crate::metrics::{ComponentMetrics, Counter};

/// How many groups of frames a JSON source decodes at once: one per core and
/// one more, so that a core that finishes a group finds the next one waiting.
pub fn decode_parallelism() -> usize {
    std::thread::available_parallelism().map_or(3, |cores| cores.get() + 1)
}

/// Transforms run one after the other on a source's decoding threads.
pub struct InlineChain {
    /// The source's sent counter (its events go to the first transform without a port).
    source_sent: Counter,
    stages: Vec<InlineStage>,
}

/// One transform of a chain, with the instances the decoding threads use.
struct InlineStage {
    id: Arc<str>,
    config: Arc<dyn TransformConfig>,
    context: TransformContext,
    /// Instances not in use; a thread that finds none (more groups at once than
    /// built for) builds one.
    idle: Mutex<Vec<Box<dyn Transform>>>,
    received: Counter,
    /// The sent counter of every stage but the last, whose output port counts what it sends.
    sent: Option<Counter>,
}

/// One transform to run inline, as the topology hands it to [`InlineChain::new`].
pub(crate) struct InlineTransform {
    pub(crate) config: Arc<dyn TransformConfig>,
    pub(crate) context: TransformContext,
}

/// The `errors` records the transforms of a chain made for one group of events, by transform.
#[derive(Debug, Default)]
pub struct TransformErrors {
    by_stage: Vec<Vec<Event>>,
}

impl TransformErrors {
    /// Whether no transform made a record.
    pub fn is_empty(&self) -> bool {
        self.by_stage.iter().all(Vec::is_empty)
    }

    /// Adds the records of a later group of events after these.
    pub fn append(&mut self, later: TransformErrors) {
        if self.by_stage.len() < later.by_stage.len() {
            self.by_stage.resize_with(later.by_stage.len(), Vec::new);
        }
        for (records, more) in self.by_stage.iter_mut().zip(later.by_stage) {
            records.extend(more);
        }
    }

    /// Gives every record the acknowledgement handle of the batch its input came in.
    ///
    /// A source attaches its batch's handle after decoding, so records made on
    /// the decoding thread get it here, as the batch's events do.
    pub fn set_finalizer(&mut self, finalizer: &Finalizer) {
        for record in self.by_stage.iter_mut().flatten() {
            record.meta.finalizer = Some(finalizer.clone());
        }
    }

    /// The records by the index of the transform that made them.
    pub(crate) fn into_stages(self) -> impl Iterator<Item = (usize, Vec<Event>)> {
        self.by_stage
            .into_iter()
            .enumerate()
            .filter(|(_, records)| !records.is_empty())
    }
}

impl InlineChain {
    /// A chain of `transforms` reading the source whose metrics are `source`.
    ///
    /// Builds the instances of each transform the decoding threads will use
    /// at once (as many as groups a source decodes at a time: the
    /// [`decode_parallelism`], and one more the `file` source keeps queued),
    /// so that a transform that cannot start fails the pipeline's start as it
    /// would as a task, and no decoding thread has to build one.
    pub(crate) fn new(
        source: &ComponentMetrics,
        transforms: Vec<InlineTransform>,
    ) -> anyhow::Result<InlineChain> {
        let instances = decode_parallelism() + 1;
        let last = transforms.len().saturating_sub(1);
        let mut stages = Vec::with_capacity(transforms.len());
        for (index, transform) in transforms.into_iter().enumerate() {
            let idle = (0..instances)
                .map(|_| transform.config.build(&transform.context))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if idle
                .iter()
                .any(|instance| instance.tick_interval().is_some())
            {
                anyhow::bail!(
                    "internal error: transform `{}` keeps time-based state and cannot run inline",
                    transform.context.id
                );
            }
            let metrics = &transform.context.metrics;
            stages.push(InlineStage {
                id: transform.context.id.clone(),
                received: metrics.received_events.clone(),
                sent: (index != last).then(|| metrics.sent_events(None)),
                idle: Mutex::new(idle),
                config: transform.config,
                context: transform.context,
            });
        }
        Ok(InlineChain {
            source_sent: source.sent_events(None),
            stages,
        })
    }

    /// The ids of the transforms, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.stages.iter().map(|stage| &*stage.id).collect()
    }

    /// Runs the chain over a group of decoded events: what the last transform
    /// keeps, and every transform's `errors` records.
    pub fn apply(&self, events: Vec<Event>) -> (Vec<Event>, TransformErrors) {
        self.source_sent.add(events.len() as u64);
        let mut errors = TransformErrors {
            by_stage: Vec::with_capacity(self.stages.len()),
        };
        let mut events = events;
        for stage in &self.stages {
            let mut output = TransformOutput::new(stage.id.clone(), 0);
            if !events.is_empty() {
                stage.received.add(events.len() as u64);
                stage.run(events, &mut output);
            }
            events = std::mem::take(&mut output.default);
            if let Some(sent) = &stage.sent {
                sent.add(events.len() as u64);
            }
            errors.by_stage.push(std::mem::take(&mut output.errors));
        }
        (events, errors)
    }
}

impl InlineStage {
    /// Runs the transform over `events` with an idle instance, or a new one.
    fn run(&self, events: Vec<Event>, output: &mut TransformOutput) {
        let idle = lock(&self.idle).pop();
        let instance = match idle {
            Some(instance) => Ok(instance),
            None => self.config.build(&self.context),
        };
        match instance {
            Ok(mut instance) => {
                instance.transform(events, output);
                lock(&self.idle).push(instance);
            }
            Err(error) => {
                self.context
                    .metrics
                    .error("transform_unavailable", events.len() as u64);
                let message = format!(
                    "transform `{}` could not start another instance: {error:#}; the events are not passed on",
                    self.id
                );
                for event in &events {
                    output.push_error(event, &message);
                }
            }
        }
    }
}

/// The idle instances, also after a thread panicked while holding them (the list stays valid).
fn lock(idle: &Mutex<Vec<Box<dyn Transform>>>) -> MutexGuard<'_, Vec<Box<dyn Transform>>> {
    match idle.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Which transforms run inline, by the id of the source whose decoding threads run them (in order).
///
/// From a source that decodes inline, the chain follows the default output
/// while it has exactly one reader, a transform that runs inline and reads
/// nothing else.
pub(crate) fn plan(config: &PipelineConfig) -> BTreeMap<String, Vec<String>> {
    let readers = readers_of_outputs(config);
    let mut chains = BTreeMap::new();
    for entry in &config.components {
        let ComponentConfig::Source(source) = &entry.config else {
            continue;
        };
        if !source.decodes_inline() {
            continue;
        }
        let mut chain = Vec::new();
        let mut upstream = entry.id.as_str();
        while let Some(next) = sole_inline_reader(upstream, &readers) {
            chain.push(next.id.clone());
            upstream = &next.id;
        }
        if !chain.is_empty() {
            chains.insert(entry.id.clone(), chain);
        }
    }
    chains
}

/// Every component's distinct inputs, with the components reading each output.
struct Readers<'a> {
    of_output: BTreeMap<OutputRef, Vec<&'a ComponentEntry>>,
    inputs: BTreeMap<&'a str, Vec<OutputRef>>,
}

fn readers_of_outputs(config: &PipelineConfig) -> Readers<'_> {
    let mut readers = Readers {
        of_output: BTreeMap::new(),
        inputs: BTreeMap::new(),
    };
    for entry in &config.components {
        let mut inputs: Vec<OutputRef> = Vec::new();
        for input in entry.inputs.iter().map(|input| OutputRef::parse(input)) {
            if !inputs.contains(&input) {
                readers
                    .of_output
                    .entry(input.clone())
                    .or_default()
                    .push(entry);
                inputs.push(input);
            }
        }
        readers.inputs.insert(&entry.id, inputs);
    }
    readers
}

/// The transform that can run inline after `upstream`, if it is the only reader of its default output.
fn sole_inline_reader<'a>(upstream: &str, readers: &Readers<'a>) -> Option<&'a ComponentEntry> {
    let output = OutputRef {
        component: upstream.to_string(),
        output: None,
    };
    let [reader] = readers.of_output.get(&output)?.as_slice() else {
        return None;
    };
    let ComponentConfig::Transform(transform) = &reader.config else {
        return None;
    };
    let reads_only_upstream = readers
        .inputs
        .get(reader.id.as_str())
        .is_some_and(|inputs| inputs.as_slice() == [output]);
    let outputs_only_default =
        transform.named_outputs().is_empty() && transform.has_default_output();
    (transform.runs_inline() && outputs_only_default && reads_only_upstream).then_some(*reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AuditEvent, Payload};

    fn record(id: &str) -> Event {
        let text = format!(r#"{{"auditID":"{id}","stage":"ResponseComplete","verb":"get"}}"#);
        let event = AuditEvent::parse(&text).expect("a valid event");
        Event::new(Payload::Audit(Arc::new(event)), "in".into())
    }

    fn ids(errors: &TransformErrors) -> Vec<Vec<String>> {
        let id = |event: &Event| event.as_audit().map(|a| a.header().audit_id().to_string());
        let stage = |records: &Vec<Event>| records.iter().filter_map(id).collect();
        errors.by_stage.iter().map(stage).collect()
    }

    #[test]
    fn later_records_follow_earlier_ones_stage_by_stage() {
        let mut errors = TransformErrors {
            by_stage: vec![vec![record("a")]],
        };
        errors.append(TransformErrors {
            by_stage: vec![vec![record("b")], vec![record("c")]],
        });
        errors.append(TransformErrors::default());
        assert_eq!(ids(&errors), vec![vec!["a", "b"], vec!["c"]]);
        assert!(!errors.is_empty());
        let stages: Vec<usize> = errors.into_stages().map(|(stage, _)| stage).collect();
        assert_eq!(stages, vec![0, 1]);
        assert!(TransformErrors::default().is_empty());
    }
}
