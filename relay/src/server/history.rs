//! A query of stored flows, merged exactly across the nodes as they answer.

use super::*;

/// A non-follow answer: every connected node's answer, merged exactly in
/// time order (each node answers oldest first), holding at most a few
/// batches per node. `first` stops after `number`; the newest `number`
/// (up to the sort buffer's capacity) are kept until the end.
pub(super) async fn history_flows(
    pool: Arc<Pool>,
    request: GetFlowsRequest,
    extensions: bool,
    options: MergeOptions,
    out: Out,
    mut shutdown: watch::Receiver<bool>,
) {
    let peers = pool.peers();
    let (mut connected, mut unavailable) = (Vec::new(), Vec::new());
    let mut errors = Vec::new();
    let mut sources = Vec::new();
    let mut readers = Readers(Vec::new());
    for (address, p) in peers.iter() {
        match &p.channel {
            Some(channel) => {
                let (tx, rx) = mpsc::channel(4);
                let address: Arc<str> = Arc::from(address.as_str());
                readers.0.push(tokio::spawn(read_node(
                    address.clone(),
                    p.name.clone(),
                    channel.clone(),
                    request.clone(),
                    extensions,
                    tx,
                    pool.clone(),
                )));
                sources.push((p.name.clone(), rx));
                connected.push(p.name.clone());
            }
            None if p.state == NodeState::NodeError => errors.push(node_status(
                NodeState::NodeError,
                vec![p.name.clone()],
                p.error.clone().unwrap_or_default(),
            )),
            None => unavailable.push(p.name.clone()),
        }
    }
    let mut batch = opening(connected, unavailable, errors);
    // The nodes each answer the request's window; the merge keeps its first
    // or last `number` (the newest only while they fit the sort buffer).
    let take = Plan {
        number: request.number,
        first: request.first,
        ..Plan::default()
    }
    .take();
    let first = match take {
        Take::First(n) => Some(n),
        _ => None,
    };
    let last = match take {
        Take::Last(n) => usize::try_from(n).ok().filter(|&n| n <= options.capacity),
        _ => None,
    };
    let mut newest = Keep::new(last.map_or(Take::All, |n| Take::Last(n as u64)));
    let mut sent = 0u64;
    let mut merge = Merge::new(sources.len());
    loop {
        while let Some(r) = merge.pop() {
            if last.is_some() {
                newest.offer(r);
                continue;
            }
            batch.push(r);
            sent += 1;
            if first == Some(sent) {
                let _ = flush(&out, &mut batch).await;
                return;
            }
            if batch.len() >= BATCH && !flush(&out, &mut batch).await {
                return;
            }
        }
        let Some(i) = merge.waiting_on() else { break };
        if !flush(&out, &mut batch).await {
            return;
        }
        let (name, rx) = &mut sources[i];
        let said = tokio::select! {
            said = rx.recv() => said,
            _ = out.closed() => return,
            _ = shutdown.changed() => return,
        };
        match said {
            Some((_, Said::Responses(responses))) => merge.push(i, responses),
            Some((_, Said::Opened)) => {}
            Some((address, Said::Error(status))) => {
                merge.finish(i);
                let (state, message) = broken(&address, &status);
                batch.push(node_status(state, vec![name.clone()], message));
            }
            Some((_, Said::End)) | None => merge.finish(i),
        }
    }
    batch.extend(newest.into_kept());
    for chunk in batch.chunks(BATCH) {
        if out.send(chunk.to_vec()).await.is_err() {
            return;
        }
    }
}
