import net from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy in front of a real Tally, so a test can take Tally away from a client and give it
 * back on the same address (stop/start), or lose answers Tally has already committed
 * (`dropResponses`): the client times out and retries what was in fact stored. `failNext` answers
 * the next connections with a canned HTTP response (a 503 or 429 from a load balancer).
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  connections = 0;
  /** While > 0, each new connection's answers are swallowed (the request still reaches Tally). */
  dropResponses = 0;
  /** Canned raw HTTP answers for the next connections, instead of reaching Tally. */
  readonly failNext: string[] = [];

  private constructor(private readonly targetPort: number) {}

  static async start(targetUrl: string): Promise<TcpProxy> {
    const proxy = new TcpProxy(Number(new URL(targetUrl).port));
    await proxy.listen();
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async listen(): Promise<void> {
    const server = net.createServer((client) => this.handle(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and cuts every open connection: to a client, Tally is gone. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(client: net.Socket): void {
    this.connections += 1;
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => undefined);
    const canned = this.failNext.shift();
    if (canned !== undefined) {
      client.once('data', () => client.end(canned));
      return;
    }
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    this.sockets.add(upstream);
    upstream.on('close', () => this.sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('data', (chunk) => upstream.write(chunk));
    if (this.dropResponses > 0) {
      this.dropResponses -= 1;
      // Tally reads the whole request and commits it; its answer goes nowhere. The upstream side
      // is left open until Tally is done, so the request is not cut short.
      upstream.on('data', () => undefined);
      client.on('close', () => upstream.end());
      return;
    }
    upstream.on('data', (chunk) => client.write(chunk));
    upstream.on('end', () => client.end());
    client.on('close', () => upstream.end());
  }
}
