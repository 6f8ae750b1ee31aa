//! The coordinators a client may reach: one URL, or several that stand by for each other.
//!
//! A pool with a standby coordinator is given as every coordinator's URL, comma-separated.
//! The client sends to the one it used last and moves on to the next when that one cannot
//! take the request: it refuses the connection (dead, or not started), answers `standby`
//! (another one leads), or does not answer in time (frozen). A request that surely did not
//! reach a leader (the first two) is sent again at once to the next coordinator; one that
//! timed out is not, as the leader may have taken it, and its caller retries as it would.
//! All clones of a client share where it is, and a request still waiting on a coordinator the
//! client has left is given up as unanswered, so an agent's every loop follows at once.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::ClientError;

/// The URLs, in the order given, and which one is used now.
#[derive(Debug)]
pub(crate) struct Coordinators {
    urls: Vec<String>,
    current: AtomicUsize,
    /// Told each move, so requests held open at a coordinator that froze stop waiting.
    moved: watch::Sender<usize>,
}

/// How many coordinators one client may be given: a pool has a leader and a standby or two.
pub(crate) const COORDINATOR_URLS_MAX: usize = 8;

impl Coordinators {
    /// `list` as given by the user: one URL, or several separated by commas.
    pub(crate) fn parse(list: &str, https_only: bool) -> Result<Coordinators, ClientError> {
        let urls: Vec<String> = list
            .split(',')
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty())
            .collect();
        if urls.is_empty() || urls.len() > COORDINATOR_URLS_MAX {
            return Err(ClientError::BadUrl(format!(
                "{list} (give one URL, or up to {COORDINATOR_URLS_MAX} separated by commas)"
            )));
        }
        for url in &urls {
            let scheme_ok = if https_only {
                url.starts_with("https://")
            } else {
                url.starts_with("http://") || url.starts_with("https://")
            };
            if !scheme_ok || reqwest::Url::parse(url).is_err() {
                let why = if https_only {
                    " (a pinned certificate needs an https:// URL)"
                } else {
                    ""
                };
                return Err(ClientError::BadUrl(format!("{url}{why}")));
            }
        }
        Ok(Coordinators {
            urls,
            current: AtomicUsize::new(0),
            moved: watch::Sender::new(0),
        })
    }

    pub(crate) fn count(&self) -> usize {
        self.urls.len()
    }

    /// The index of the coordinator used now.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    pub(crate) fn url(&self, index: usize) -> &str {
        &self.urls[index]
    }

    /// Moves on from coordinator `from` to the next, unless another request already moved
    /// on from it; returns the one to use now.
    pub(crate) fn move_on(&self, from: usize) -> usize {
        let next = (from + 1) % self.urls.len();
        match self
            .current
            .compare_exchange(from, next, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {
                tracing::info!(from = %self.urls[from], to = %self.urls[next], "moving on to another coordinator");
                self.moved.send_replace(next);
                next
            }
            Err(now) => now,
        }
    }

    /// Returns once the client has left coordinator `used` (at once if it already has).
    pub(crate) async fn left(&self, used: usize) {
        let mut moved = self.moved.subscribe();
        let _ = moved.wait_for(|now| *now != used).await;
    }

    /// Aims `request`, made for any of these coordinators, at coordinator `to`: another
    /// request may have moved the client on since it was made.
    pub(crate) fn aim(&self, request: &mut reqwest::Request, to: usize) {
        if self.urls.len() == 1 {
            return;
        }
        let url = request.url().as_str();
        let tail = self.urls.iter().find_map(|base| {
            let base = reqwest::Url::parse(base).expect("checked when parsed");
            let base = format!("{}/", base.as_str().trim_end_matches('/'));
            url.strip_prefix(&base).map(str::to_owned)
        });
        if let Some(tail) = tail
            && let Ok(aimed) = reqwest::Url::parse(&format!("{}/{tail}", self.urls[to]))
        {
            *request.url_mut() = aimed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_urls_is_checked_and_a_request_follows_a_move() {
        let coordinators =
            Coordinators::parse("http://127.0.0.1:1/, http://127.0.0.2:2", false).unwrap();
        assert_eq!(
            [coordinators.url(0), coordinators.url(1)],
            ["http://127.0.0.1:1", "http://127.0.0.2:2"]
        );
        let mut request = reqwest::Request::new(
            reqwest::Method::GET,
            reqwest::Url::parse("http://127.0.0.1:1/v1/jobs?state=running").unwrap(),
        );
        assert_eq!(coordinators.move_on(0), 1);
        assert_eq!(
            coordinators.move_on(0),
            1,
            "a second move from 0 finds it moved"
        );
        coordinators.aim(&mut request, 1);
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.2:2/v1/jobs?state=running"
        );
        coordinators.aim(&mut request, 1);
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.2:2/v1/jobs?state=running",
            "a request aimed where it goes stays"
        );
        let ports = Coordinators::parse("http://a:1,http://a:10", false).unwrap();
        let mut request = reqwest::Request::new(
            reqwest::Method::GET,
            reqwest::Url::parse("http://a:10/v1/health").unwrap(),
        );
        ports.aim(&mut request, 0);
        assert_eq!(
            request.url().as_str(),
            "http://a:1/v1/health",
            "one port is not a prefix of another"
        );
        assert_eq!(coordinators.move_on(1), 0, "the list wraps around");
        for bad in ["", ",", "ftp://x", "http://a,https://b,not a url"] {
            assert!(Coordinators::parse(bad, false).is_err(), "{bad:?}");
        }
        assert!(Coordinators::parse("http://a:1", true).is_err());
        let many = ["http://a:1"; COORDINATOR_URLS_MAX + 1].join(",");
        assert!(Coordinators::parse(&many, false).is_err());
    }
}
