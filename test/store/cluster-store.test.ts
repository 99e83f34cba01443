import { MemoryLevel } from 'memory-level';
import { describe, expect, it, vi } from 'vitest';
import { KEYS, Tx, transact } from '../../src/store/cluster-store.js';
import { LevelStore, type LevelDatabase } from '../../src/store/level-store.js';
import { SCHEMA_VERSION } from '../../src/store/records.js';

const open = (): Promise<LevelStore> => LevelStore.open(new MemoryLevel<string, string>() as unknown as LevelDatabase, 'memory');
const tokens = (worker: string) => ({ schema: SCHEMA_VERSION, worker, manager: 'm', rotatedAt: { worker: 1, manager: 1 } }) as const;

describe('transact', () => {
  it('re-runs a read-modify-write whose read changed meanwhile, so no update is lost', async () => {
    const store = await open();
    await transact(store, async (tx) => tx.put(KEYS.tokens, tokens('0')));
    // 50 concurrent increments of one record: each reads, then writes read+1.
    await Promise.all(
      Array.from({ length: 50 }, () =>
        transact(store, async (tx) => {
          const current = await tx.get(KEYS.tokens);
          tx.put(KEYS.tokens, tokens(String(Number(current!.worker) + 1)));
        }, { attempts: 100 }),
      ),
    );
    expect((await store.get(KEYS.tokens))?.value.worker).toBe('50');
    await store.close();
  });

  it('gives up with STORE_CONFLICT when every attempt conflicts, and runs the refresh between attempts', async () => {
    const store = await open();
    let refreshes = 0;
    await expect(
      transact(
        store,
        async (tx) => {
          tx.assume(KEYS.tokens, { value: tokens('x'), version: 999 }); // a version the store never had
          tx.put(KEYS.tokens, tokens('y'));
        },
        { attempts: 3, beforeRetry: async () => void refreshes++ },
      ),
    ).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
    expect(refreshes).toBe(3);
    await store.close();
  });

  it('refuses to write a record that does not match its schema', async () => {
    const tx = new Tx(await open());
    expect(() => tx.put(KEYS.tokens, { schema: SCHEMA_VERSION } as never)).toThrow(/does not match its schema/);
  });

  it('commits nothing for a read-only attempt', async () => {
    const store = await open();
    const commit = vi.spyOn(store, 'commit');
    expect(await transact(store, async (tx) => (await tx.get(KEYS.cluster)) ?? 'none')).toBe('none');
    expect(commit).not.toHaveBeenCalled();
    await store.close();
  });
});
