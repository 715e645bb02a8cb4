//! `train`'s side of the link to `tune` ([`kiln_tune::link`]): a [`Referee`]
//! that reports each validation on stdout and takes the verdict from stdin.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use kiln_train::{Referee, ValidationMetrics, Verdict};
use kiln_tune::link::{self, Report};

#[derive(Debug)]
pub struct TuneLink {
    verdicts: Mutex<mpsc::Receiver<String>>,
}

impl TuneLink {
    /// The link, when `tune` started this process (`KILN_TUNE_LINK=1`). Its
    /// stdin closing (tune died) sets `interrupt`: the run checkpoints and stops.
    pub fn from_env(interrupt: Arc<AtomicBool>) -> Option<Arc<Self>> {
        if std::env::var(link::ENV).ok().as_deref() != Some("1") {
            return None;
        }
        let (sender, verdicts) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if sender.send(line.trim().to_owned()).is_err() {
                    return;
                }
            }
            interrupt.store(true, Ordering::SeqCst);
            tracing::warn!("tune is gone; stopping after this step with a checkpoint");
        });
        Some(Arc::new(Self { verdicts: Mutex::new(verdicts) }))
    }
}

impl Referee for TuneLink {
    fn judge(&self, step: usize, epoch: f64, metrics: &ValidationMetrics) -> Verdict {
        let report = Report { step, epoch, loss: metrics.loss, accuracy: metrics.accuracy, macro_f1: metrics.macro_f1 };
        let mut stdout = std::io::stdout().lock();
        if stdout.write_all(report.line().as_bytes()).and_then(|()| stdout.flush()).is_err() {
            return Verdict::Interrupt;
        }
        let Ok(verdicts) = self.verdicts.lock() else { return Verdict::Interrupt };
        match verdicts.recv().as_deref() {
            Ok(link::PRUNE) => Verdict::Prune,
            Ok(_) => Verdict::Continue,
            Err(_) => Verdict::Interrupt,
        }
    }
}
