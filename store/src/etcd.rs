//! The etcd backend: the same contract on a real etcd 3.4+ through `etcd-client`.
//!
//! Response size: gRPC clients refuse messages over 4 MiB by default, and one range
//! response holds a whole list — a few thousand Tasks are more than that. The clients
//! here accept what etcd sends at most (its server limit is 2 GiB), and a list without
//! a limit is read in pages of [`LIST_PAGE`] keys at one revision (halved when a page
//! is still too large), so no single response has to hold all of it.

use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType,
    GetOptions, GetResponse, KvClient, PutOptions, Txn as EtcdTxn, TxnOp, WatchClient,
    WatchOptions,
};
use futures::StreamExt;

use crate::continuation::Continuation;
use crate::error::{StoreError, StoreResult};
use crate::kv::{
    prefix_end, Compare, EventKind, KeyValue, LeaseId, ListOptions, ListPage, Op, Revision, Txn,
    TxnOutcome, WatchEvent, WatchStream,
};
use crate::store::Store;

/// The largest response the clients decode: what etcd's gRPC server sends at most
/// (`math.MaxInt32`); tonic's default is 4 MiB.
pub const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// Keys per range request of a list without a limit.
pub const LIST_PAGE: i64 = 1000;

/// A store on etcd. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    kv: KvClient,
    watch: WatchClient,
}

impl EtcdStore {
    pub async fn connect(endpoints: &[String]) -> StoreResult<Self> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(std::time::Duration::from_secs(30));
        let client = Client::connect(endpoints, Some(opts)).await?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        let watch = client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        Ok(EtcdStore { client, kv, watch })
    }

    fn kv(&self) -> KvClient {
        self.kv.clone()
    }

    /// One range request from `start` to the end of `prefix`.
    async fn range(
        &self,
        prefix: &str,
        start: &str,
        limit: i64,
        revision: Revision,
    ) -> Result<GetResponse, etcd_client::Error> {
        let mut get = GetOptions::new().with_range(prefix_end(prefix.as_bytes()));
        if limit > 0 {
            get = get.with_limit(limit);
        }
        if revision > 0 {
            get = get.with_revision(revision);
        }
        self.kv().get(start, Some(get)).await
    }

    /// Every key under `prefix` from `start`, at `revision` (0: now), page by page at
    /// the revision of the first one. Returns the items and that revision.
    async fn range_all(
        &self,
        prefix: &str,
        start: &str,
        revision: Revision,
    ) -> StoreResult<(Vec<KeyValue>, Revision)> {
        let mut items = Vec::new();
        let mut at = revision;
        let mut from = start.to_string();
        let mut page = LIST_PAGE;
        loop {
            let resp = match self.range(prefix, &from, page, at).await {
                Ok(resp) => resp,
                Err(e) if too_large(&e) && page > 1 => {
                    page = (page / 2).max(1);
                    tracing::debug!(prefix, page, "etcd range response too large; smaller pages");
                    continue;
                }
                Err(e) => return Err(classify(e, at)),
            };
            if at == 0 {
                at = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            items.extend(resp.kvs().iter().map(to_kv));
            match items.last() {
                // The next key after the last one.
                Some(last) if resp.more() => from = format!("{}\0", last.key),
                _ => return Ok((items, at)),
            }
        }
    }
}

/// A response over a message size limit: ours ("decoded message length too large")
/// or the server's ("trying to send message larger than max").
fn too_large(e: &etcd_client::Error) -> bool {
    let text = e.to_string();
    text.contains("message length too large") || text.contains("message larger than max")
}

fn to_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

/// etcd says "required revision has been compacted" / "future revision" as gRPC status
/// messages; turn them into the contract's errors.
fn classify(e: etcd_client::Error, requested: Revision) -> StoreError {
    let msg = e.to_string();
    if msg.contains("required revision has been compacted") {
        StoreError::Compacted {
            requested,
            compacted: 0,
        }
    } else if msg.contains("required revision is a future revision") {
        StoreError::FutureRevision {
            requested,
            current: 0,
        }
    } else if msg.contains("requested lease not found") {
        StoreError::LeaseNotFound(0)
    } else {
        StoreError::from(e)
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        let resp = self.kv().get(key, None).await?;
        Ok(resp.kvs().first().map(to_kv))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListPage> {
        let (at, start) = match &opts.continue_token {
            Some(token) => {
                let c = Continuation::decode(token, prefix)?;
                (c.revision, c.start)
            }
            None => (opts.revision.unwrap_or(0), prefix.to_string()),
        };
        if opts.limit == 0 {
            let (items, revision) = self.range_all(prefix, &start, at).await?;
            return Ok(ListPage {
                items,
                revision,
                continue_token: None,
            });
        }
        // One extra tells whether a next page exists.
        let resp = self
            .range(prefix, &start, opts.limit as i64 + 1, at)
            .await
            .map_err(|e| classify(e, at))?;
        let revision = if at > 0 {
            at
        } else {
            resp.header().map(|h| h.revision()).unwrap_or(0)
        };
        let mut items: Vec<KeyValue> = resp.kvs().iter().map(to_kv).collect();
        let mut continue_token = None;
        if opts.limit > 0 && items.len() > opts.limit {
            items.truncate(opts.limit);
            if let Some(last) = items.last() {
                continue_token = Some(Continuation::after(revision, &last.key).encode());
            }
        }
        Ok(ListPage {
            items,
            revision,
            continue_token,
        })
    }

    async fn txn(&self, txn: Txn) -> StoreResult<TxnOutcome> {
        txn.check()?;
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|c| match c {
                Compare::ModRevision { key, equals } => {
                    EtcdCompare::mod_revision(key.as_str(), CompareOp::Equal, *equals)
                }
                Compare::Exists { key } => {
                    EtcdCompare::create_revision(key.as_str(), CompareOp::Greater, 0)
                }
            })
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    let opts = (*lease != 0).then(|| PutOptions::new().with_lease(*lease));
                    TxnOp::put(key.as_str(), value.clone(), opts)
                }
                Op::Delete { key } => TxnOp::delete(key.as_str(), None),
            })
            .collect();
        let resp = self
            .kv()
            .txn(EtcdTxn::new().when(compares).and_then(ops))
            .await
            .map_err(|e| match classify(e, 0) {
                StoreError::LeaseNotFound(_) => {
                    let lease = txn
                        .ops
                        .iter()
                        .find_map(|op| match op {
                            Op::Put { lease, .. } if *lease != 0 => Some(*lease),
                            _ => None,
                        })
                        .unwrap_or(0);
                    StoreError::LeaseNotFound(lease)
                }
                other => other,
            })?;
        Ok(TxnOutcome {
            succeeded: resp.succeeded(),
            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
        })
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> StoreResult<WatchStream> {
        let mut opts = WatchOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_prev_key();
        if from_revision > 0 {
            opts = opts.with_start_revision(from_revision);
        }
        let (watcher, stream) = self.watch.clone().watch(prefix, Some(opts)).await?;
        // The watcher must live as long as the stream: dropping it cancels the watch.
        let events = futures::stream::unfold(
            (watcher, stream, false),
            move |(watcher, mut stream, done)| async move {
                if done {
                    return None;
                }
                match stream.message().await {
                    Ok(Some(resp)) => {
                        if resp.compact_revision() > 0 {
                            let err = StoreError::Compacted {
                                requested: from_revision,
                                compacted: resp.compact_revision(),
                            };
                            return Some((vec![Err(err)], (watcher, stream, true)));
                        }
                        if resp.canceled() {
                            let err = StoreError::EtcdServer(format!(
                                "watch canceled: {}",
                                resp.cancel_reason()
                            ));
                            return Some((vec![Err(err)], (watcher, stream, true)));
                        }
                        let batch = resp
                            .events()
                            .iter()
                            .filter_map(|ev| {
                                let kv = ev.kv()?;
                                let kind = match ev.event_type() {
                                    EventType::Put => EventKind::Put,
                                    EventType::Delete => EventKind::Delete,
                                };
                                let mut kv = to_kv(kv);
                                if kind == EventKind::Delete {
                                    kv.value.clear();
                                }
                                Some(Ok(WatchEvent {
                                    kind,
                                    kv,
                                    prev: ev.prev_kv().map(to_kv),
                                }))
                            })
                            .collect();
                        Some((batch, (watcher, stream, false)))
                    }
                    Ok(None) => None,
                    Err(e) => Some((vec![Err(StoreError::from(e))], (watcher, stream, true))),
                }
            },
        )
        .flat_map(futures::stream::iter);
        Ok(Box::pin(events))
    }

    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        match self
            .kv()
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
        {
            Ok(_) => Ok(()),
            // Already compacted at or past this revision: nothing to do, as in the embedded store.
            Err(e)
                if e.to_string()
                    .contains("required revision has been compacted") =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn current_revision(&self) -> StoreResult<Revision> {
        let resp = self
            .kv()
            .get("\0", Some(GetOptions::new().with_count_only()))
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    async fn grant_lease(&self, ttl_seconds: i64) -> StoreResult<LeaseId> {
        if ttl_seconds <= 0 {
            return Err(StoreError::InvalidTxn(format!(
                "lease TTL must be > 0 seconds, got {ttl_seconds}"
            )));
        }
        let resp = self.client.lease_client().grant(ttl_seconds, None).await?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<i64> {
        let not_found = |e: etcd_client::Error| match e {
            etcd_client::Error::LeaseKeepAliveError(_) => StoreError::LeaseNotFound(lease),
            other => classify(other, 0),
        };
        let (mut keeper, mut stream) = self
            .client
            .lease_client()
            .keep_alive(lease)
            .await
            .map_err(not_found)?;
        keeper.keep_alive().await.map_err(not_found)?;
        match stream.message().await.map_err(not_found)? {
            Some(resp) if resp.ttl() > 0 => Ok(resp.ttl()),
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> StoreResult<()> {
        match self.client.lease_client().revoke(lease).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("requested lease not found") => {
                Err(StoreError::LeaseNotFound(lease))
            }
            Err(e) => Err(e.into()),
        }
    }
}
