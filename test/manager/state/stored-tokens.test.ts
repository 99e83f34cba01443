/** The classic join tokens at rest: hashed to check joins, sealed to show; no store holds one in clear. */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryLevel } from 'memory-level';
import { recordingLogger } from '../../../src/core/logger.js';
import { systemRandom } from '../../../src/core/random.js';
import { buildServices } from '../../../src/manager/manager.js';
import { hashToken, openToken, sealClearTokens, storeToken } from '../../../src/manager/state/stored-tokens.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { LevelStore, type LevelDatabase } from '../../../src/store/level-store.js';
import { codeOf, codeOfSync } from '../../helpers/codes.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';

const clusters: TestCluster[] = [];
afterEach(async () => {
  for (const t of clusters.splice(0)) await t.cleanup();
});

/** Every value the database holds, as its raw text. */
async function rawValues(db: LevelDatabase): Promise<string> {
  const values: string[] = [];
  for await (const [key, value] of db.iterator()) values.push(`${String(key)}=${value}`);
  return values.join('\n');
}

describe('join tokens at rest', () => {
  it('are founded sealed: the raw store holds neither token nor its secret part, joins and display still work', async () => {
    const db = new MemoryLevel<string, string>() as unknown as LevelDatabase;
    const t = await foundTestCluster({ store: await LevelStore.open(db, 'level (memory)'), shared: true });
    clusters.push(t);
    const { worker, manager } = t.settings.joinTokens();
    const raw = await rawValues(db);
    for (const token of [worker, manager]) {
      expect(raw).not.toContain(token);
      expect(raw).not.toContain(token.slice(-25));
    }
    const stored = (await t.store.get(KEYS.tokens))!.value;
    expect(stored.worker).toEqual({ hash: hashToken(worker).toString('hex'), sealed: expect.objectContaining({ alg: 'A256GCM' }) });
    expect((await t.caServer.join({ token: worker, csr: freshCsr().csr }, '10.0.0.1')).role).toBe('worker');
    expect((await t.caServer.join({ token: manager, csr: freshCsr().csr }, '10.0.0.1')).role).toBe('manager');
    const rotated = await t.settings.rotateToken('worker');
    expect(await rawValues(db)).not.toContain(rotated.worker);
    expect(await codeOf(t.caServer.join({ token: worker, csr: freshCsr().csr }, '10.0.0.1'))).toBe('TOKEN_REJECTED');
    expect((await t.caServer.join({ token: rotated.worker, csr: freshCsr().csr }, '10.0.0.1')).role).toBe('worker');
    expect((await t.settings.clusterView(true)).joinTokens.worker.token).toBe(rotated.worker);
  });

  it('written in clear by an older muster are sealed when a manager starts, and keep working', async () => {
    const db = new MemoryLevel<string, string>() as unknown as LevelDatabase;
    const t = await foundTestCluster({ store: await LevelStore.open(db, 'level (memory)') });
    clusters.push(t);
    const { worker, manager } = t.settings.joinTokens();
    const entry = (await t.store.get(KEYS.tokens))!;
    // What a store of the previous release holds: the tokens themselves.
    expect(
      await t.store.commit({
        compares: [{ key: KEYS.tokens.key, version: entry.version }],
        puts: [{ key: KEYS.tokens.key, value: { ...entry.value, worker, manager } }],
        deletes: [],
      }),
    ).toBe(true);
    expect(await rawValues(db)).toContain(worker);
    const logger = recordingLogger();
    const { services } = await buildServices({
      store: t.store,
      dataKey: t.dataKey,
      nodeId: t.managerId,
      addr: '127.0.0.1:4377',
      clock: t.clock,
      random: systemRandom,
      logger,
      managerBundle: () => undefined,
    });
    try {
      expect(logger.records.map((r) => r.message)).toContain('sealed the join tokens the store held in clear');
      const raw = await rawValues(db);
      expect(raw).not.toContain(worker);
      expect(raw).not.toContain(manager);
      expect(services.settings.joinTokens()).toMatchObject({ worker, manager });
      expect((await services.caServer.join({ token: worker, csr: freshCsr().csr }, '10.0.0.1')).role).toBe('worker');
      // Once sealed, nothing more to do.
      expect(await sealClearTokens(t.store, t.dataKey)).toBe(false);
    } finally {
      await services.state.close();
    }
  });

  it('a sealed token opens only as its own role, under its own data key, untampered', async () => {
    const t = await foundTestCluster();
    clusters.push(t);
    const { worker } = t.settings.joinTokens();
    const sealed = storeToken(t.dataKey, 'worker', worker);
    expect(openToken(t.dataKey, 'worker', sealed)).toBe(worker);
    // Moved to the other role's field.
    expect(codeOfSync(() => openToken(t.dataKey, 'manager', sealed))).toBe('STATE_CORRUPT');
    // Another cluster's data key.
    expect(codeOfSync(() => openToken(Buffer.alloc(32, 1), 'worker', sealed))).toBe('STATE_CORRUPT');
    // A hash that does not belong to the sealed token (someone swapped the hash to admit another token).
    expect(codeOfSync(() => openToken(t.dataKey, 'worker', { ...sealed, hash: hashToken('SWMTKN-1-x').toString('hex') }))).toBe('STATE_CORRUPT');
  });
});
