// What lumen-ui sends (see ui/src/map.rs, rows.rs, hub.rs).

export type Health = 'forwarded' | 'audit' | 'some-drops' | 'all-dropped';

export interface MapNode {
  id: string;
  kind: string;
  namespace: string;
  name: string;
  label: string;
  pods: string[];
  labels: string[];
  identities: number[];
  flows: number;
  flows_in: number;
  flows_out: number;
  dropped: number;
  in_per_sec: number;
  out_per_sec: number;
  drops_per_sec: number;
  drop_pct: number;
  trend: number[];
  last_seen_ms: number;
}

export interface Count { name: string; count: number; }

export interface MapEdge {
  id: string;
  source: string;
  target: string;
  ports: string[];
  ports_other: number;
  flows: number;
  forwarded: number;
  dropped: number;
  audit: number;
  flows_per_sec: number;
  drops_per_sec: number;
  drop_pct: number;
  health: Health;
  drop_reasons: Count[];
  policies: Count[];
  last_seen_ms: number;
}

export interface Totals {
  flows: number;
  forwarded: number;
  dropped: number;
  audit: number;
  lost_events: number;
  flows_per_sec: number;
  drops_per_sec: number;
  history: number[];
}

export interface MapState {
  unit: string;
  now_ms: number;
  nodes: MapNode[];
  edges: MapEdge[];
  namespaces: string[];
  totals: Totals;
  evicted: number;
}

export interface Delta {
  nodes: MapNode[];
  nodes_removed: string[];
  edges: MapEdge[];
  edges_removed: string[];
}

export interface FlowRow {
  seq: number;
  time_ms: number;
  time: string;
  source: string;
  destination: string;
  source_ip: string;
  destination_ip: string;
  source_identity: number;
  destination_identity: number;
  source_node: string;
  destination_node: string;
  source_port: number;
  destination_port: number;
  protocol: string;
  verdict: string;
  drop_reason: string;
  policy: string;
  node: string;
  tcp_flags: string;
  direction: string;
  is_reply: boolean | null;
  summary: string;
}

export type LinkState =
  | { state: 'connecting' }
  | { state: 'connected'; since_ms: number }
  | { state: 'reconnecting'; reason: string; retry_in_ms: number; since_ms: number };

export interface ServerInfo {
  kind: string;
  version: string;
  connected_nodes: number;
  unavailable_nodes: string[];
  nodes: [string, string][];
}

export interface PipelineHealth {
  link: LinkState;
  server: ServerInfo | null;
  status_error: string | null;
  unavailable_nodes: string[];
  lost_events: number;
  received: number;
  ring: number;
  ring_capacity: number;
}

export interface Message {
  map?: MapState;
  delta?: Delta;
  totals: Totals;
  namespaces: string[];
  now_ms: number;
  flows: FlowRow[];
  flows_skipped: number;
  health: PipelineHealth;
  /** The view's history was cut short, and why. */
  notice: string | null;
}
