// The server's API: fetches with the bearer token when one is needed, and
// the message stream (Server-Sent Events read through fetch, so that the
// token can travel in a header).

import type { Message } from './types';

const TOKEN_KEY = 'lumen-ui-token';

export class Unauthorized extends Error {}
export class BadRequest extends Error {}

function headers(): HeadersInit {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export function setToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

async function failure(r: Response): Promise<Error> {
  let reason = `${r.status} ${r.statusText}`;
  try {
    const body = (await r.json()) as { error?: string };
    if (body.error) reason = body.error;
  } catch {
    // not JSON: keep the status line
  }
  if (r.status === 401) return new Unauthorized(reason);
  if (r.status === 400) return new BadRequest(reason);
  return new Error(reason);
}

export async function getJson<T>(path: string): Promise<T> {
  const r = await fetch(path, { headers: headers() });
  if (!r.ok) throw await failure(r);
  return (await r.json()) as T;
}

/** Downloads `path` (with the token) as the file `name`. */
export async function download(path: string, name: string): Promise<void> {
  const r = await fetch(path, { headers: headers() });
  if (!r.ok) throw await failure(r);
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/**
 * Reads the stream of `query` until `signal` aborts or it ends: the messages
 * that arrived together (a backlog, after the page was busy) to `onMessages`
 * at once, so that they are drawn once. Rejects with BadRequest (a bad
 * view), Unauthorized, or the network's error.
 */
export async function stream(
  query: string,
  signal: AbortSignal,
  onMessages: (m: Message[]) => void,
): Promise<void> {
  const r = await fetch(`/api/stream?${query}`, { headers: headers(), signal });
  if (!r.ok) throw await failure(r);
  if (!r.body) throw new Error('the stream has no body');
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  // Where the search for the end of a message goes on (a large message
  // comes in many chunks: each is searched once).
  let searched = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const messages: Message[] = [];
    let end: number;
    while ((end = buffer.indexOf('\n\n', searched)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      searched = 0;
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length === 0) continue;
      if (event === 'error') {
        if (messages.length > 0) onMessages(messages);
        throw new BadRequest(data.join('\n'));
      }
      messages.push(JSON.parse(data.join('\n')) as Message);
    }
    searched = Math.max(0, buffer.length - 1);
    if (messages.length > 0) onMessages(messages);
  }
}
