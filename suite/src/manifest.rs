//! The manifest of a store that many processes write (shards, hosts, reruns): planned once,
//! then only grown, under the store's `study` claim.
//!
//! A process plans over the tasks whose data it has. Finding a manifest of the same study it
//! takes the union of the manifest's tasks and its own — so a host lacking a data set never
//! erases the tasks another host added — and writes only when that changes the manifest.
//! A manifest of another code version is refused unless mixing is allowed; then the cells
//! answered by a finished older record keep it, and only the rest are planned anew.

use crate::plan::Job;
use anyhow::{bail, Result};
use beatmatch_core::claim::{Acquired, Claims};
use beatmatch_core::{content_hash, Store, Study};
use beatmatch_tasks::Task;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The claim key guarding the manifest.
const LOCK: &str = "study";

/// What planning a set of tasks gives: the manifest and its unique runs.
pub type Planned = (Study, Vec<Job>);

/// The manifest in force after this process's say, and the runs it references.
pub struct Settled {
    /// The manifest as stored.
    pub study: Study,
    /// Its runs still to be trained under this code version (cells answered by older records excluded).
    pub jobs: Vec<Job>,
    /// What happened to the manifest, for the log (e.g. `written`, `unchanged`, `grown by 3 tasks`).
    pub note: String,
}

/// Plans a subset of the selection (in selection order) with the given skip list.
pub type Planner<'a> = &'a dyn Fn(&[Task], Vec<(String, String)>) -> Result<Planned>;

/// What this process brings to the manifest.
pub struct Ask<'a> {
    /// Every task of the selection this build can run, data present or not.
    pub selected: &'a [Task],
    /// Ids of those whose data this host has.
    pub available: &'a BTreeSet<String>,
    /// Tasks this host skips, with the reason.
    pub skipped: &'a [(String, String)],
    /// The planner of this study's optimizers.
    pub plan_tasks: Planner<'a>,
    /// Join a manifest of another code version.
    pub allow_mixed: bool,
}

/// Fix the manifest of `store`, under its lock.
pub fn settle(store: &Store, claims: &Claims, ask: &Ask<'_>) -> Result<Settled> {
    lock(claims)?;
    let settled = settle_locked(store, claims, ask);
    claims.release(LOCK);
    settled
}

fn lock(claims: &Claims) -> Result<()> {
    let started = Instant::now();
    let deadline = started + claims.ttl() * 2 + Duration::from_secs(5);
    let mut told = false;
    loop {
        match claims.acquire(LOCK)? {
            Acquired::Yes { .. } => return Ok(()),
            Acquired::HeldBy(h) => {
                let who = h.map_or("another process".to_string(), |h| format!("{} pid {} ({})", h.host, h.pid, h.label));
                if Instant::now() > deadline {
                    bail!("the study manifest's lock has been held by {who} for over {:.0} s", claims.ttl().as_secs_f64() * 2.0);
                }
                // Held for milliseconds normally; longer means its holder died on another host,
                // and the lock frees when its claim expires.
                if !told && started.elapsed() > Duration::from_secs(2) {
                    eprintln!("waiting for the study manifest's lock, held by {who} (free within {:.0} s if it died)", claims.ttl().as_secs_f64());
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A cell's identity across code versions: task id, arm name, configuration hash, seed.
type CellId = (String, String, String, u64);

fn cell_ids(s: &Study) -> Vec<CellId> {
    s.cells.iter().map(|c| (s.tasks[c.task].id.clone(), s.arms[c.arm].name.clone(), content_hash(&s.arms[c.arm].configs[c.config]), c.seed)).collect()
}

fn same_study(a: &Study, b: &Study) -> bool {
    a.selection == b.selection && a.device == b.device && a.speedup_cap == b.speedup_cap && a.arms == b.arms
}

fn settle_locked(store: &Store, claims: &Claims, ask: &Ask<'_>) -> Result<Settled> {
    let Ask { selected, available, skipped, plan_tasks, allow_mixed } = *ask;
    let ours_only: Vec<Task> = selected.iter().filter(|t| available.contains(&t.id())).cloned().collect();
    let existing = if store.has_study() { Some(store.read_study()?) } else { None };
    let selected_ids: BTreeSet<String> = selected.iter().map(Task::id).collect();
    let fresh = |note: String| -> Result<Settled> {
        let (study, jobs) = plan_tasks(&ours_only, skipped.to_vec())?;
        if study.tasks.is_empty() {
            bail!("no task of the selection has its data on this host, and {} holds no study to join", store.dir().display());
        }
        store.write_study(&study)?;
        Ok(Settled { study, jobs, note })
    };
    let Some(ex) = existing else { return fresh("written".into()) };

    let (probe, _) = plan_tasks(&[], vec![])?;
    let foreign_tasks = ex.tasks.iter().filter(|t| !selected_ids.contains(&t.id)).count();
    if !same_study(&ex, &probe) || foreign_tasks > 0 {
        // Another study in this directory: replaced, unless someone is still working on it.
        let busy = busy_claims(claims);
        if busy > 0 {
            bail!(
                "{} holds a different study (other arms, selection or device) that {busy} live claim(s) are still working on; use another --out",
                store.dir().display()
            );
        }
        return fresh(format!("replaced a different study ({} tasks, selection `{}`)", ex.tasks.len(), ex.selection));
    }
    if ex.code_version != probe.code_version && !allow_mixed {
        bail!(
            "{} was planned by {}, and this is {}: its records would not be reused. Use another --out, or pass --allow-mixed to keep its finished runs and train only the rest with this version (reports then need --allow-mixed too)",
            store.study_path().display(),
            ex.code_version,
            probe.code_version
        );
    }
    // The union of the stored tasks and ours, in selection order.
    let stored: BTreeSet<&str> = ex.tasks.iter().map(|t| t.id.as_str()).collect();
    let union: Vec<Task> = selected.iter().filter(|t| stored.contains(t.id().as_str()) || available.contains(&t.id())).cloned().collect();
    let same_tasks = union.len() == ex.tasks.len();
    let skip = if same_tasks {
        ex.skipped.clone()
    } else {
        let ids: BTreeSet<String> = union.iter().map(Task::id).collect();
        skipped.iter().filter(|(id, _)| !ids.contains(id)).cloned().collect()
    };
    let (mut study, mut jobs) = plan_tasks(&union, skip)?;
    let mut kept = 0;
    if allow_mixed {
        // Cells the stored manifest answers with a finished record keep it, whatever its version.
        let old: HashMap<CellId, String> = cell_ids(&ex).into_iter().zip(ex.cells.iter().map(|c| c.record.clone())).collect();
        let ids = cell_ids(&study);
        for (cell, id) in study.cells.iter_mut().zip(ids) {
            if let Some(rec) = old.get(&id).filter(|r| **r != cell.record && store.finished(r).is_some()) {
                cell.record = rec.clone();
                kept += 1;
            }
        }
        let referenced: BTreeSet<&str> = study.cells.iter().map(|c| c.record.as_str()).collect();
        jobs.retain(|j| referenced.contains(j.key.hash().as_str()));
    }
    let note = if study == ex {
        "unchanged".to_string()
    } else {
        store.write_study(&study)?;
        let grown = study.tasks.len() - ex.tasks.len().min(study.tasks.len());
        let mut parts = Vec::new();
        if grown > 0 {
            parts.push(format!("grown by {grown} tasks"));
        }
        if kept > 0 {
            parts.push(format!("{kept} cells keep records of other code versions"));
        }
        if ex.code_version != study.code_version {
            parts.push(format!("code version {} -> {}", ex.code_version, study.code_version));
        }
        if parts.is_empty() {
            parts.push("rewritten".into());
        }
        parts.join(", ")
    };
    Ok(Settled { study, jobs, note })
}

/// Live claims in the store other than this process's manifest lock.
fn busy_claims(claims: &Claims) -> usize {
    claims.keys().iter().filter(|k| *k != LOCK && matches!(claims.state(k), Ok(beatmatch_core::claim::ClaimState::Live { .. }))).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{baseline_arm, candidate_arm, plan, PlanRequest};
    use beatmatch_baselines::Protocol;
    use beatmatch_core::claim::Holder;

    const REGISTRY: &str = "families:
  - tier: smoke
    logreg: {}
    datasets: [mnist1d]
    batch_sizes: [32]
    steps: [10]
  - tier: smoke
    mlp: { width: [4], depth: [1], activation: [relu] }
    datasets: [mnist1d]
    batch_sizes: [32]
    steps: [10]
";

    fn planner<'a>(candidate: &'a str, protocols: &'a [Protocol]) -> impl Fn(&[Task], Vec<(String, String)>) -> Result<Planned> + 'a {
        let mut f = crate::factory::OptimizerFactory::default();
        let mut arms = vec![candidate_arm(&mut f, candidate, None, 1).unwrap()];
        arms.extend(protocols.iter().map(|p| baseline_arm(&mut f, p).unwrap()));
        move |tasks, skipped| plan(&PlanRequest { tasks, selection: "test".into(), arms: &arms, device: "cpu".into(), skipped })
    }

    fn ids(s: &Study) -> Vec<String> {
        s.tasks.iter().map(|t| t.id.clone()).collect()
    }

    #[test]
    fn a_host_lacking_data_never_erases_another_hosts_tasks() {
        let tasks = beatmatch_tasks::registry::parse("r.yaml", REGISTRY).unwrap();
        let all: BTreeSet<String> = tasks.iter().map(Task::id).collect();
        let part: BTreeSet<String> = [tasks[1].id()].into();
        let protocols = [Protocol::embedded("adam-lr15").unwrap()];
        let plan_tasks = planner("adam:lr=1e-3", &protocols);
        let skipped = vec![(tasks[0].id(), "data missing".to_string())];
        let ask = |available, skipped| Ask { selected: &tasks, available, skipped, plan_tasks: &plan_tasks, allow_mixed: false };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let claims = store.claims(Duration::from_secs(60), Holder::me("test")).unwrap();
        // The host lacking a data set comes first: it writes what it can.
        let s = settle(&store, &claims, &ask(&part, &skipped)).unwrap();
        assert_eq!((ids(&s.study), s.note.as_str()), (vec![tasks[1].id()], "written"));
        // The host with every data set grows the manifest; the first one's rerun leaves it.
        let s = settle(&store, &claims, &ask(&all, &[])).unwrap();
        assert_eq!(ids(&s.study), vec![tasks[0].id(), tasks[1].id()]);
        assert!(s.note.contains("grown by 1 tasks"), "{}", s.note);
        let bytes = std::fs::read(store.study_path()).unwrap();
        let again = settle(&store, &claims, &ask(&part, &skipped)).unwrap();
        assert_eq!(again.note, "unchanged");
        assert_eq!(again.jobs.len(), s.jobs.len(), "every run of the study is planned, to be trained where the data is");
        assert_eq!(std::fs::read(store.study_path()).unwrap(), bytes);
        // The same study planned in one go by the full host is byte-identical.
        let dir2 = tempfile::tempdir().unwrap();
        let store2 = Store::create(dir2.path()).unwrap();
        settle(&store2, &claims, &ask(&all, &[])).unwrap();
        assert_eq!(std::fs::read(store2.study_path()).unwrap(), bytes);
    }

    #[test]
    fn another_study_is_replaced_unless_busy_and_another_version_refused_unless_allowed() {
        let tasks = beatmatch_tasks::registry::parse("r.yaml", REGISTRY).unwrap();
        let all: BTreeSet<String> = tasks.iter().map(Task::id).collect();
        let protocols = [Protocol::embedded("adam-lr15").unwrap()];
        let (first, second) = (planner("adam:lr=1e-3", &protocols), planner("adam:lr=3e-3", &protocols));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let claims = store.claims(Duration::from_secs(60), Holder::me("test")).unwrap();
        let ask = |p: Planner<'_>| settle(&store, &claims, &Ask { selected: &tasks, available: &all, skipped: &[], plan_tasks: p, allow_mixed: false });
        ask(&first).unwrap();
        // Someone is training the first study: it is not replaced under them.
        let other = store.claims(Duration::from_secs(60), Holder::me("other")).unwrap();
        other.acquire("somegroup-s0").unwrap();
        let e = ask(&second).err().unwrap().to_string();
        assert!(e.contains("different study") && e.contains("1 live claim"), "{e}");
        other.release("somegroup-s0");
        assert!(ask(&second).unwrap().note.starts_with("replaced a different study"));
        // An older code version's study: refused, naming both versions.
        let mut old = store.read_study().unwrap();
        old.code_version = "beatmatch-0.0.1+sem1".into();
        store.write_study(&old).unwrap();
        let e = ask(&second).err().unwrap().to_string();
        assert!(e.contains("beatmatch-0.0.1+sem1") && e.contains(&beatmatch_core::code_version()) && e.contains("--allow-mixed"), "{e}");
    }
}
