//! Publishing `events.k8s.io/v1` Events, a repeat of the same Event within a few minutes as a count on the
//! first one (its `series`), in constant time and memory per Event.
//!
//! Hand-written rather than kube's `Recorder`: that one scans every Event it published in the last six
//! minutes on each publish (under one lock) and keeps each of them whole, so at 10,000 subscriptions the
//! Event of every create cost a pass over 10,000 others.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::clock::SharedClock;

/// A repeat within this window is counted on the first Event instead of written as a new one.
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// At most this many recent Events are remembered; beyond it the oldest repeat is written as a new Event.
const RECENT_BOUND: usize = 4_096;

/// The API server refuses a longer note.
const NOTE_LIMIT: usize = 1024;

/// `text` cut to at most `limit` bytes, at a character boundary.
fn truncate(text: &str, limit: usize) -> &str {
    // `str::floor_char_boundary` is newer than the crate's minimum Rust version.
    let end = (0..=text.len().min(limit))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Publishes Events as one reporting controller instance.
pub struct EventPublisher {
    client: kube::Client,
    controller: String,
    instance: String,
    clock: SharedClock,
    recent: Mutex<Recent>,
}

/// The Events published within the series window, by what makes two of them the same.
#[derive(Default)]
struct Recent {
    by_key: HashMap<u64, Sent>,
    /// (when, key) in publishing order; an entry is stale when its key was published again since.
    order: VecDeque<(Timestamp, u64)>,
}

struct Sent {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// What a publish does.
#[derive(Debug, PartialEq, Eq)]
enum Write {
    Create,
    /// Counts a repeat on the Event `name` in `namespace`.
    Count {
        namespace: String,
        name: String,
        count: i32,
    },
}

impl Recent {
    /// Forgets what is outside the window or over the bound, then says how to publish `key`.
    fn plan(&mut self, key: u64, now: Timestamp) -> Write {
        while let Some(&(when, oldest)) = self.order.front() {
            let expired = when + SERIES_WINDOW <= now;
            let over = self.by_key.len() > RECENT_BOUND || self.order.len() > 4 * RECENT_BOUND;
            if !expired && !over {
                break;
            }
            self.order.pop_front();
            if self.by_key.get(&oldest).is_some_and(|sent| sent.last == when) {
                self.by_key.remove(&oldest);
            }
        }
        match self.by_key.get(&key) {
            Some(sent) => Write::Count {
                namespace: sent.namespace.clone(),
                name: sent.name.clone(),
                count: sent.count.saturating_add(1),
            },
            None => Write::Create,
        }
    }

    fn record(&mut self, key: u64, now: Timestamp, namespace: &str, name: &str, count: i32) {
        self.by_key.insert(
            key,
            Sent {
                namespace: namespace.to_string(),
                name: name.to_string(),
                count,
                last: now,
            },
        );
        self.order.push_back((now, key));
    }
}

impl EventPublisher {
    pub fn new(client: kube::Client, controller: &str, instance: &str, clock: SharedClock) -> Self {
        EventPublisher {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            clock,
            recent: Mutex::new(Recent::default()),
        }
    }

    /// Publishes one Event about `regarding`; `reason` doubles as the action.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let note = truncate(note, NOTE_LIMIT);
        let now = self.clock.now();
        let key = {
            let mut hasher = DefaultHasher::new();
            (
                &regarding.uid,
                &regarding.namespace,
                &regarding.name,
                type_,
                reason,
                note,
            )
                .hash(&mut hasher);
            hasher.finish()
        };
        let planned = self.lock().plan(key, now);
        if let Write::Count { namespace, name, count } = planned {
            let series = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
            let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => {
                    self.lock().record(key, now, &namespace, &name, count);
                    return Ok(());
                }
                // Gone (its TTL ran out, or someone deleted it): a new Event says it instead.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(reason.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note.to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_.as_str().to_string()),
            ..Event::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        self.lock().record(key, now, &namespace, &name, 1);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_repeat_within_the_window_is_counted_on_the_first_event() {
        let mut recent = Recent::default();
        assert_eq!(recent.plan(1, at(0)), Write::Create);
        recent.record(1, at(0), "ns", "sub.1", 1);
        assert_eq!(
            recent.plan(1, at(60)),
            Write::Count {
                namespace: "ns".into(),
                name: "sub.1".into(),
                count: 2
            }
        );
        recent.record(1, at(60), "ns", "sub.1", 2);
        assert_eq!(recent.plan(2, at(61)), Write::Create, "another Event is its own");
        // The window runs from the last repeat.
        assert!(matches!(recent.plan(1, at(60 + 359)), Write::Count { count: 3, .. }));
        assert_eq!(recent.plan(1, at(60 + 360)), Write::Create);
        assert!(recent.by_key.is_empty() && recent.order.is_empty());
    }

    #[test]
    fn a_long_note_is_cut_at_a_character_boundary() {
        let long = "é".repeat(600);
        let cut = truncate(&long, NOTE_LIMIT);
        assert_eq!(cut.len(), 1024);
        assert_eq!(truncate(&"é".repeat(600)[..1025 - 1], 1023).len(), 1022);
        assert_eq!(truncate("short", NOTE_LIMIT), "short");
    }

    #[test]
    fn memory_stays_bounded_however_many_events_are_published() {
        let mut recent = Recent::default();
        for key in 0..(3 * RECENT_BOUND as u64) {
            let _ = recent.plan(key, at(1));
            recent.record(key, at(1), "ns", "e", 1);
        }
        assert!(recent.by_key.len() <= RECENT_BOUND + 1);
        assert!(recent.order.len() <= RECENT_BOUND + 1);
        // The newest are the ones kept.
        let newest = 3 * RECENT_BOUND as u64 - 1;
        assert!(matches!(recent.plan(newest, at(2)), Write::Count { .. }));
        assert_eq!(recent.plan(0, at(2)), Write::Create);
    }
}
