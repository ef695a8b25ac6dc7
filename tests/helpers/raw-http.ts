import net from 'node:net';
import type http from 'node:http';

export interface RawExchange {
  /** Every byte the server sent, as text. */
  text: string;
  /** The first socket error the client saw (ECONNRESET, EPIPE), if any. */
  error?: string;
}

/**
 * A client below fetch: writes `parts` on one connection, each after the last was taken (a
 * short pause between them), and goes on writing after the server's half of the connection
 * ended, as fetch does; reads until the connection closes. `end: 'after-parts'` half-closes once
 * the last part is out (one request, read whole); `end: 'when-server-ends'` only answers the
 * server's end (pipelined requests answered in turn). `parts` may be a generator, so megabytes
 * go out piece by piece.
 */
export function rawExchange(baseUrl: string, parts: Iterable<string>, options: { end: 'after-parts' | 'when-server-ends'; gapMs?: number }): Promise<RawExchange> {
  const { port } = new URL(baseUrl);
  const pending = parts[Symbol.iterator]();
  return new Promise((resolve) => {
    const socket = net.connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? String(err)));
    if (options.end === 'when-server-ends') socket.on('end', () => socket.end());
    socket.on('close', () => resolve({ text: Buffer.concat(chunks).toString('utf8'), ...(error ? { error } : {}) }));
    const next = (): void => {
      if (socket.destroyed) return;
      const part = pending.next();
      if (part.done) {
        if (options.end === 'after-parts') socket.end();
        return;
      }
      socket.write(part.value, () => setTimeout(next, options.gapMs ?? 2));
    };
    next();
  });
}

/** `count` pieces of `size` bytes of `fill`, made as they are sent. */
export function* pieces(count: number, size: number, fill = 'x'): Generator<string> {
  for (let i = 0; i < count; i++) yield fill.repeat(size);
}

/** The status codes of every answer in `text`, in order (an answer may follow the last one's body directly). */
export function statusesOf(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

export interface ServerClosed extends RawExchange {
  /** From the client's last write to the server closing its side. */
  afterLastWriteMs: number;
  /** From the first write to the server closing its side. */
  afterStartMs: number;
}

/**
 * Writes `opening` on a new half-open connection to `server` (the next connection it accepts is
 * taken to be this one), lets `drive` write more, and ends when the server's side of the
 * connection closes (a client half-open as fetch is cannot tell): what the server sent, the first
 * client error, and when. The client's socket is closed then; `drive`'s timers should stop on its `close`.
 */
export function untilServerCloses(server: http.Server, baseUrl: string, opening: string, drive: (socket: net.Socket) => void = () => undefined): Promise<ServerClosed> {
  const { port } = new URL(baseUrl);
  return new Promise((resolve) => {
    const started = Date.now();
    let lastWrite = started;
    let error: string | undefined;
    const chunks: Buffer[] = [];
    server.once('connection', (serverSide: net.Socket) =>
      serverSide.once('close', () => {
        const now = Date.now();
        // what was in flight to the client is read before it is let go
        setTimeout(() => {
          socket.destroy();
          resolve({ text: Buffer.concat(chunks).toString('utf8'), ...(error ? { error } : {}), afterLastWriteMs: now - lastWrite, afterStartMs: now - started });
        }, 100);
      }),
    );
    const socket = net.connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true });
    const write = socket.write.bind(socket);
    socket.write = ((data: string) => {
      lastWrite = Date.now();
      return write(data);
    }) as typeof socket.write;
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? String(err)));
    socket.write(opening);
    drive(socket);
  });
}
