//! Keeping the lead of the database while serving the pool.
//!
//! The leader renews its lead four times a term. The database's clock sets each term's end,
//! from the moment the renewal runs, which is no earlier than the moment this coordinator
//! asked for it: so a term counted here from the asking ends no later than it does in the
//! database. A standby (`LeadTerms::standby`) that has not renewed by a quarter-term before
//! that end steps down at once, so it has stopped serving before a standby can take over. One
//! started alone keeps serving through a slow database, as it always has: no standby waits
//! for it, and the epoch would refuse its writes if one took over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use store::Renewal;

use crate::service::Shared;

/// Renews the lead until the coordinator stops, or steps down when it is lost or about to run
/// out.
pub(crate) async fn keep_lead(shared: Arc<Shared>) {
    let terms = shared.config.lead.clone();
    let term = Duration::from_millis(terms.term_ms);
    let every = term / 4;
    let mut stopping = shared.stopping.subscribe();
    let mut renewed_from = shared.store.lead_asked_at();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopping.changed() => return,
        }
        let asked_at = Instant::now();
        // Past this the lead could run out before the next renewal lands.
        let last_safe = renewed_from + term - every;
        let renewal = shared.store.renew_lead(terms.term_ms);
        let renewal = if terms.standby {
            match tokio::time::timeout_at(last_safe.into(), renewal).await {
                Ok(renewal) => renewal,
                Err(_) => {
                    shared.step_down(format!(
                        "its lead was not renewed within {} ms (the database, or this process, stalled)",
                        (term - every).as_millis()
                    ));
                    return;
                }
            }
        } else {
            renewal.await
        };
        match renewal {
            Ok(Renewal::Held) => renewed_from = asked_at,
            Ok(Renewal::Lost { holder }) => {
                shared.step_down(format!(
                    "another coordinator took over this database ({holder:?} leads it now)"
                ));
                return;
            }
            Err(error) if terms.standby && Instant::now() >= last_safe => {
                shared.step_down(format!("cannot renew the lead in time ({error})"));
                return;
            }
            Err(error) => tracing::warn!(%error, "cannot renew the lead; trying again"),
        }
    }
}
