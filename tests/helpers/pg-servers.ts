import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

/**
 * Real PostgreSQL servers beside the test cluster (127.0.0.1:5432), each on a port and data
 * folder of its own and stopped afterwards: a streaming replica (pg_basebackup -R + pg_ctl
 * from the installed PostgreSQL 15) and PgBouncer in transaction pooling mode.
 * PostgreSQL and PgBouncer refuse to run as root: when the tests do, these run as `postgres`.
 */

const run = promisify(execFile);
const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** The primary the servers copy or front (the test cluster; any database URL on it names it). */
export function primaryBase(primaryUrl = process.env.DATABASE_URL!): URL {
  const url = new URL(primaryUrl);
  url.pathname = '/';
  return url;
}

/** The same database (and user) on another host:port. */
export function onPort(databaseUrl: string, port: number): string {
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface RunAs {
  uid?: number;
  gid?: number;
}

async function serviceUser(): Promise<RunAs> {
  if (process.getuid?.() !== 0) return {};
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

function folderFor(user: RunAs, name: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `tally-${name}-`));
  if (user.uid !== undefined) chownSync(dir, user.uid, user.gid!);
  return dir;
}

function writeOwned(file: string, text: string, user: RunAs): void {
  writeFileSync(file, text, { mode: 0o600 });
  if (user.uid !== undefined) chownSync(file, user.uid, user.gid!);
}

async function query<T extends pg.QueryResultRow>(connectionString: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Lets the primary's `postgres` user open replication connections from 127.0.0.1, as
 * pg_basebackup and a streaming standby need (Debian's pg_hba.conf has no replication line
 * for TCP). Idempotent: appends the line only when no rule allows it yet, then reloads.
 * .ci/run does the same before the suite.
 */
export async function ensureReplicationAccess(primaryUrl?: string): Promise<void> {
  const admin = new URL('postgres', primaryBase(primaryUrl)).toString();
  const rules = await query<{ n: string }>(
    admin,
    `SELECT count(*)::text AS n FROM pg_hba_file_rules
      WHERE type = 'host' AND 'replication' = ANY(database) AND ('postgres' = ANY(user_name) OR 'all' = ANY(user_name))
        AND (address IN ('127.0.0.1', 'all', 'samehost') OR address LIKE '127.%') AND auth_method = 'trust' AND error IS NULL`,
  );
  if (Number(rules[0]!.n) > 0) return;
  const [{ hba_file: hba }] = (await query<{ hba_file: string }>(admin, 'SHOW hba_file')) as [{ hba_file: string }];
  writeFileSync(hba, '\n# tally tests: streaming replica via pg_basebackup (tests/helpers/pg-servers.ts)\nhost replication postgres 127.0.0.1/32 trust\n', { flag: 'a' });
  await query(admin, 'SELECT pg_reload_conf()');
}

export interface Replica {
  port: number;
  dir: string;
  /** The database of `databaseUrl` on the replica. */
  urlOf(databaseUrl: string): string;
  stop(): Promise<void>;
}

/**
 * A hot standby of the test cluster: a base backup with streaming WAL (-X stream) and
 * standby.signal plus primary_conninfo (-R), started with pg_ctl on its own port. The whole
 * cluster is copied, so every database of the run is on it too.
 */
export async function startReplica(primaryUrl?: string): Promise<Replica> {
  await ensureReplicationAccess(primaryUrl);
  const user = await serviceUser();
  const dir = folderFor(user, 'replica');
  const data = path.join(dir, 'data');
  const port = await freePort();
  const primary = primaryBase(primaryUrl);
  const admin = new URL('postgres', primary).toString();
  // A standby needs at least the primary's values of these.
  const settings = await query<{ name: string; setting: string }>(
    admin,
    `SELECT name, setting FROM pg_settings WHERE name IN ('max_connections', 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions', 'max_locks_per_transaction')`,
  );
  await run(`${PG_BIN}/pg_basebackup`, ['-h', primary.hostname, '-p', primary.port || '5432', '-U', 'postgres', '-D', data, '-R', '-X', 'stream', '-c', 'fast'], {
    ...user,
    maxBuffer: 16 * 1024 * 1024,
  });
  // Debian keeps postgresql.conf and pg_hba.conf in /etc: the copy gets its own.
  writeOwned(
    path.join(data, 'postgresql.conf'),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dir}'`,
      'hot_standby = on',
      // Long reads (exports) are not cancelled by the vacuum of rows they still see.
      'hot_standby_feedback = on',
      'shared_buffers = 32MB',
      'fsync = off',
      ...settings.map((s) => `${s.name} = ${s.setting}`),
    ].join('\n') + '\n',
    user,
  );
  writeOwned(path.join(data, 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\n', user);
  writeOwned(path.join(data, 'pg_ident.conf'), '', user);
  await run(`${PG_BIN}/pg_ctl`, ['-D', data, '-l', path.join(dir, 'replica.log'), '-o', `-p ${port}`, '-w', '-t', '60', 'start'], user);
  let stopped = false;
  return {
    port,
    dir,
    urlOf: (databaseUrl) => onPort(databaseUrl, port),
    async stop() {
      if (stopped) return;
      stopped = true;
      // immediate: a disposable copy needs no shutdown checkpoint
      await run(`${PG_BIN}/pg_ctl`, ['-D', data, '-m', 'immediate', '-w', 'stop'], user).catch(() => undefined);
      await rm(dir, { recursive: true, force: true }); // not rmSync: the API under test shares this event loop
    },
  };
}

/** Waits until the replica has replayed everything the primary had written when this was called. */
export async function waitForReplay(primaryUrl: string, replicaUrl: string, timeoutMs = 60_000): Promise<void> {
  const [{ lsn }] = (await query<{ lsn: string }>(primaryUrl, 'SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await query<{ done: boolean }>(replicaUrl, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [lsn]);
    if (row?.done) return;
    if (Date.now() > deadline) throw new Error(`replica did not replay up to ${lsn} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface PgBouncer {
  port: number;
  /** The database of `databaseUrl` through PgBouncer. */
  urlOf(databaseUrl: string): string;
  stop(): Promise<void>;
}

/**
 * PgBouncer (Debian's package) in transaction pooling mode in front of the test cluster, on
 * its own port with its own ini: a server connection is lent for one transaction, so any
 * session state a client leaves behind (named prepared statements, session advisory locks,
 * SET) lands on whichever client gets that server connection next.
 */
export async function startPgBouncer(options: { poolSize?: number; primaryUrl?: string } = {}): Promise<PgBouncer> {
  const user = await serviceUser();
  const dir = folderFor(user, 'pgbouncer');
  const port = await freePort();
  const primary = primaryBase(options.primaryUrl);
  const ini = path.join(dir, 'pgbouncer.ini');
  writeOwned(path.join(dir, 'userlist.txt'), '"postgres" ""\n', user);
  writeOwned(
    ini,
    [
      '[databases]',
      `* = host=${primary.hostname} port=${primary.port || '5432'}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir = ${dir}`,
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize ?? 4}`,
      'max_client_conn = 500',
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      'admin_users = postgres',
      'log_connections = 0',
      'log_disconnections = 0',
    ].join('\n') + '\n',
    user,
  );
  const child: ChildProcess = spawn('pgbouncer', [ini], { ...user, stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Ready when it accepts a query.
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await query(`postgresql://postgres@127.0.0.1:${port}/postgres`, 'SELECT 1');
      break;
    } catch (error) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGTERM');
        throw new Error(`pgbouncer did not start: ${(error as Error).message}`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    port,
    urlOf: (databaseUrl) => onPort(databaseUrl, port),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGINT'); // SIGINT: PgBouncer's safe shutdown (waits for transactions in progress)
        const killed = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killed);
      }
      await rm(dir, { recursive: true, force: true }); // not rmSync: the API under test shares this event loop
    },
  };
}
