//! A follow stream of the whole cluster, through the sort buffer, with nodes
//! joining, leaving and coming back as they do.

use super::*;

/// A follow stream's view of one node.
struct Tracked {
    name: String,
    /// Its number in the sort buffer, fixed for this stream.
    source: usize,
    /// Announced as connected to this client.
    up: bool,
    reader: Option<JoinHandle<()>>,
    /// When to open its stream again after it broke.
    retry: Option<(Instant, Backoff)>,
    /// The error this client was last told about (not repeated).
    error: Option<String>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(r) = &self.reader {
            r.abort();
        }
    }
}

/// One client's follow stream, until the client leaves or shutdown. Every
/// node's answers go through the sort buffer; node status events tell the
/// client which nodes it hears from; nodes that join, leave, break or come
/// back are picked up as they do.
pub(super) async fn follow_flows(
    pool: Arc<Pool>,
    request: GetFlowsRequest,
    extensions: bool,
    options: MergeOptions,
    out: Out,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut peers = pool.subscribe();
    let (items_tx, mut items) = mpsc::channel::<Item>(64);
    let mut nodes: BTreeMap<String, Tracked> = BTreeMap::new();
    let mut buffer = SortBuffer::new(options.capacity, options.window);
    // Every node this stream hears from gets a number of its own.
    let mut sources = 0;
    let mut next_source = || {
        sources += 1;
        sources - 1
    };
    let mut share = BufferShare::new(pool.metrics().clone());
    let spawn = |address: &str, name: &str, channel: &Channel, request: &GetFlowsRequest| {
        tokio::spawn(read_node(
            Arc::from(address),
            name.to_string(),
            channel.clone(),
            request.clone(),
            extensions,
            items_tx.clone(),
            pool.clone(),
        ))
    };
    let retry_backoff = |address: &str| pool.backoff(address);

    let start: Peers = peers.borrow_and_update().clone();
    let (mut connected, mut unavailable) = (Vec::new(), Vec::new());
    let mut errors = Vec::new();
    for (address, p) in start.iter() {
        let reader = p.channel.as_ref().map(|c| spawn(address, &p.name, c, &request));
        match (&reader, p.state) {
            (Some(_), _) => {}
            (None, NodeState::NodeError) => errors.push(node_status(
                NodeState::NodeError,
                vec![p.name.clone()],
                p.error.clone().unwrap_or_default(),
            )),
            (None, _) => unavailable.push(p.name.clone()),
        }
        let tracked = Tracked {
            name: p.name.clone(),
            source: next_source(),
            up: false,
            reader,
            retry: None,
            error: (p.state == NodeState::NodeError).then(|| p.error.clone().unwrap_or_default()),
        };
        nodes.insert(address.clone(), tracked);
    }
    // A follower hears "connected" once the node's stream is open, so that
    // every flow stored after that reaches it. What arrives meanwhile waits.
    let mut early = Vec::new();
    let deadline = tokio::time::Instant::now() + options.call_timeout;
    while nodes.values().any(|t| t.reader.is_some() && !t.up) {
        let Ok(Some((address, said))) = tokio::time::timeout_at(deadline, items.recv()).await else {
            break;
        };
        let Some(t) = nodes.get_mut(&*address) else { continue };
        match said {
            Said::Opened => {
                t.up = true;
                connected.push(t.name.clone());
            }
            Said::Responses(rs) => {
                let now = Instant::now();
                early.extend(rs.into_iter().filter_map(|r| buffer.push(t.source, r, now)))
            }
            Said::End | Said::Error(_) => {
                t.reader = None;
                let mut backoff = retry_backoff(&address);
                t.retry = Some((Instant::now() + backoff.next_wait(), backoff));
                match said {
                    Said::Error(status) => match broken(&address, &status) {
                        (NodeState::NodeError, message) => {
                            errors.push(node_status(NodeState::NodeError, vec![t.name.clone()], message))
                        }
                        _ => unavailable.push(t.name.clone()),
                    },
                    _ => unavailable.push(t.name.clone()),
                }
            }
        }
    }
    let mut batch = opening(connected, unavailable, errors);
    batch.extend(early);
    // A node that (re)connects later joins from then on.
    let later = GetFlowsRequest {
        number: 0,
        first: false,
        since: None,
        ..request.clone()
    };

    loop {
        share.update(&buffer);
        if !flush(&out, &mut batch).await {
            return;
        }
        let deadline = buffer.next_deadline();
        let retry_at = nodes.values().filter_map(|n| n.retry.as_ref().map(|r| r.0)).min();
        tokio::select! {
            item = items.recv() => {
                let Some((address, said)) = item else { return };
                let Some(t) = nodes.get_mut(&*address) else { continue };
                match said {
                    Said::Opened => {
                        if let Some((_, backoff)) = t.retry.as_mut() { backoff.reset(); }
                        t.retry = None;
                        if !t.up {
                            t.up = true;
                            batch.push(node_status(NodeState::NodeConnected, vec![t.name.clone()], String::new()));
                        }
                    }
                    Said::Responses(rs) => {
                        let now = Instant::now();
                        batch.extend(rs.into_iter().filter_map(|r| buffer.push(t.source, r, now)));
                    }
                    Said::End | Said::Error(_) => {
                        // Try again (the node may be back, or its connection
                        // may come back by itself) and say so only once.
                        t.reader = None;
                        let mut backoff = t.retry.take().map(|r| r.1).unwrap_or_else(|| retry_backoff(&address));
                        t.retry = Some((Instant::now() + backoff.next_wait(), backoff));
                        if t.up {
                            t.up = false;
                            let (state, message) = match said {
                                Said::Error(s) => broken(&address, &s),
                                _ => (NodeState::NodeUnavailable, format!("{address} ended the stream")),
                            };
                            batch.push(node_status(state, vec![t.name.clone()], message));
                        }
                    }
                }
            }
            changed = peers.changed() => {
                if changed.is_err() { return; }
                let now: Peers = peers.borrow_and_update().clone();
                for (address, p) in now.iter() {
                    let t = nodes.entry(address.clone()).or_insert_with(|| Tracked { name: p.name.clone(), source: next_source(), up: false, reader: None, retry: None, error: None });
                    t.name = p.name.clone();
                    match &p.channel {
                        Some(channel) if t.reader.is_none() => {
                            t.reader = Some(spawn(address, &p.name, channel, &later));
                            t.retry = None;
                        }
                        None if t.up => {
                            t.up = false;
                            if let Some(r) = t.reader.take() { r.abort(); }
                            let state = if p.state == NodeState::NodeError { NodeState::NodeError } else { NodeState::NodeUnavailable };
                            t.error = (state == NodeState::NodeError).then(|| p.error.clone().unwrap_or_default());
                            batch.push(node_status(state, vec![p.name.clone()], p.error.clone().unwrap_or_default()));
                        }
                        // A node that was never up may still fail in a new way (TLS).
                        None if p.state == NodeState::NodeError && t.error != p.error => {
                            t.error = p.error.clone();
                            batch.push(node_status(NodeState::NodeError, vec![p.name.clone()], p.error.clone().unwrap_or_default()));
                        }
                        _ => {}
                    }
                }
                let gone: Vec<String> = nodes.keys().filter(|a| !now.contains_key(*a)).cloned().collect();
                for address in gone {
                    if let Some(t) = nodes.remove(&address) {
                        batch.push(node_status(NodeState::NodeGone, vec![t.name.clone()], String::new()));
                    }
                }
            }
            _ = sleep_until(retry_at), if retry_at.is_some() => {
                let current = pool.peers();
                let due = Instant::now();
                for (address, t) in nodes.iter_mut() {
                    if t.retry.as_ref().is_some_and(|r| r.0 <= due) && t.reader.is_none() {
                        match current.get(address).and_then(|p| p.channel.as_ref()) {
                            Some(channel) => t.reader = Some(spawn(address, &t.name, channel, &later)),
                            // The pool will say when it is back.
                            None => t.retry = None,
                        }
                        if let Some(r) = t.retry.as_mut() {
                            r.0 = due + r.1.next_wait();
                        }
                    }
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => buffer.ready(Instant::now(), &mut batch),
            _ = out.closed() => return,
            _ = shutdown.changed() => return,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
