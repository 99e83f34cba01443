/** A manager's services and API in this process, on a LevelDB store in a scratch dir, for benchmarks that drive it with a fake clock. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Clock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { systemRandom } from '../../src/core/random.js';
import { buildApp, type MusterApp } from '../../src/manager/http/app.js';
import { foundCluster } from '../../src/manager/services/founding.js';
import { buildServices } from '../../src/manager/manager.js';
import type { Services } from '../../src/manager/http/routes/register.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { generateDataKey } from '../../src/pki/seal.js';
import { LevelStore } from '../../src/store/level-store.js';

/** A manager serving HTTPS on 127.0.0.1 from this process. */
export interface BenchManager {
  services: Services;
  app: MusterApp;
  address: string;
  stop(): Promise<void>;
}

/** Founds a cluster and serves it with `clock` (fake or real) and no failure limits. */
export async function startBenchManager(params: { clock: Clock; certExpiryMs: number }): Promise<BenchManager> {
  const dir = mkdtempSync(join(tmpdir(), 'muster-bench-'));
  const store = await LevelStore.openDir(join(dir, 'db'), { create: true });
  const dataKey = generateDataKey();
  const managerKey = generateNodeKeySync();
  const founded = await foundCluster({
    store,
    clock: params.clock,
    random: systemRandom,
    logger: silentLogger,
    dataKey,
    certExpiryMs: params.certExpiryMs,
    csrPem: createCsr({ privateKey: managerKey.privateKey }),
    hostname: 'bench-manager',
    managerAddr: '127.0.0.1:0',
  });
  const { services, membership } = await buildServices({
    store,
    dataKey,
    nodeId: founded.nodeId,
    addr: '127.0.0.1:0',
    clock: params.clock,
    random: systemRandom,
    logger: silentLogger,
    failureLimits: { maxFailures: 1_000_000, windowMs: 1, maxAddresses: 10 },
    managerBundle: () => undefined,
  });
  const app = await buildApp({ services, tls: { keyPem: managerKey.privateKeyPem, certPem: founded.certificate.certPem }, logger: pino({ level: 'silent' }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = `127.0.0.1:${(app.server.address() as { port: number }).port}`;
  await membership.register(address);
  return {
    services,
    app,
    address,
    async stop() {
      await app.close();
      await services.state.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
