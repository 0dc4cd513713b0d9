/**
 * `npm start`: applies the migrations, seeds a demo sale when there is none, then runs the API and one worker as
 * separate processes (restarting neither: a crash is visible), and prints the demo page URL.
 * Ctrl-C stops both gracefully.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../core/config.ts';
import { createDb } from '../core/db/client.ts';
import { createLogger } from '../core/logger.ts';
import { createRedis } from '../core/redis/client.ts';
import { createSale } from '../core/sales.ts';
import { migrate } from '../prisma/migrate.ts';

const config = loadConfig();
const root = fileURLToPath(new URL('..', import.meta.url));

const applied = await migrate(config.DATABASE_URL);
console.log(applied.length ? `Applied migrations: ${applied.join(', ')}` : 'Database schema is up to date');

const db = createDb(config.DATABASE_URL, 2);
const redis = createRedis(config.redis, createLogger('start', 'warn'));
if ((await db.sale.count()) === 0) {
  const sale = await createSale(db, redis, config.REDIS_KEY_PREFIX, {
    name: 'Demo sneakers drop',
    stock: 100,
    perUserLimit: 1,
    startsAt: new Date(),
    endsAt: null,
  });
  console.log(`Seeded demo sale ${sale.id} (100 units)`);
}
await db.$disconnect();
redis.disconnect();

const children: ChildProcess[] = [];
function run(name: string, entry: string): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', entry], { cwd: root, stdio: 'inherit', env: process.env });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`${name} exited (${signal ?? code}); stopping`);
      stop(1);
    }
  });
  children.push(child);
  return child;
}

let stopping = false;
function stop(code = 0): void {
  if (stopping) return;
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.on('exit', r))))).then(() => process.exit(code));
}
process.on('SIGINT', () => stop());
process.on('SIGTERM', () => stop());

run('worker', 'worker/main.ts');
run('api', 'api/main.ts');
console.log(`\nDemo page: http://localhost:${config.PORT}/   (admin token: ${config.NODE_ENV === 'production' ? '<ADMIN_TOKEN>' : config.ADMIN_TOKEN})\n`);
