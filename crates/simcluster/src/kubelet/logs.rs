//! Container logs, as the runtime keeps them: the current instance's and the previous one's.

use std::collections::HashMap;
use std::sync::Mutex;

/// (namespace, pod, container) -> (current instance's lines, previous instance's lines)
type LogMap = HashMap<(String, String, String), (Vec<String>, Option<Vec<String>>)>;

/// Container logs, current and previous instance, readable through `pods/log`.
#[derive(Default)]
pub struct Logs {
    inner: Mutex<LogMap>,
}

impl Logs {
    pub(super) fn start_instance(&self, ns: &str, pod: &str, container: &str, lines: Vec<String>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(&(ns.into(), pod.into(), container.into())) {
            Some(entry) => entry.1 = Some(std::mem::replace(&mut entry.0, lines)),
            None => {
                m.insert((ns.into(), pod.into(), container.into()), (lines, None));
            }
        }
    }

    pub(super) fn forget(&self, ns: &str, pod: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !(k.0 == ns && k.1 == pod));
    }

    /// `None` when the container has no (previous) instance.
    pub fn read(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<Vec<String>> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (current, prev) = m.get(&(ns.into(), pod.into(), container.into()))?;
        if previous {
            prev.clone()
        } else {
            Some(current.clone())
        }
    }
}
