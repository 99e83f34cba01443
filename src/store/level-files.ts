/**
 * LevelDB's own files, checked without writing a byte. Opening a LevelDB
 * writes before it reads a table (it rotates LOG, starts a new MANIFEST and
 * log, and rewrites CURRENT), so a damaged store found by opening it has
 * already been changed; muster leaves a store it refuses exactly as it found
 * it, for a restore or a look by hand. This reads what LevelDB's recovery
 * reads, as it reads it, and checks that every table the store lists is
 * there whole.
 *
 * Formats (leveldb doc/log_format.md, doc/table_format.md, db/version_edit.cc):
 * - CURRENT: the MANIFEST's file name and a newline.
 * - MANIFEST: a log of 32 KiB blocks of physical records,
 *   `crc32c (4 bytes LE, masked) | length (2 LE) | type (1) | data`, type
 *   1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST; fewer than 7 bytes left in a block are
 *   padding. A record torn at the end of the file is a crash while writing and
 *   is ignored, as LevelDB does; a bad checksum or fragment order is damage.
 * - Each logical record is a VersionEdit: varint32 tags, 1 comparator (slice),
 *   2 log number, 3 next file number, 4 last sequence, 9 previous log number
 *   (varint64 each), 5 compact pointer (level, slice), 6 deleted file (level,
 *   number), 7 new file (level, number, size, smallest and largest key slices).
 * - A table `NNNNNN.ldb` (older `.sst`) of the recorded size ends with a
 *   48-byte footer whose last 8 bytes are the magic number 0xdb4775248b80fb57.
 */
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

const BLOCK_SIZE = 32_768;
const HEADER_SIZE = 7;
const TABLE_MAGIC = Buffer.from([0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb]);
const FOOTER_SIZE = 48;

/** CRC-32C (Castagnoli), the checksum of LevelDB's log records (node:zlib has only CRC-32). */
const CRC32C_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** LevelDB stores checksums masked (util/crc32c.h), so a CRC of data holding CRCs is not confusing. */
const masked = (crc: number): number => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;

/** Why a store's files are damaged; undefined when LevelDB's recovery would find them whole. */
export type LevelDamage = string | undefined;

/** The logical records of a log file, or the damage LevelDB's reader would report. */
function logRecords(file: Buffer): { records: Buffer[] } | { damage: string } {
  const records: Buffer[] = [];
  let fragments: Buffer[] | undefined;
  for (let block = 0; block < file.length; block += BLOCK_SIZE) {
    const end = Math.min(block + BLOCK_SIZE, file.length);
    const atEof = end === file.length;
    let pos = block;
    while (end - pos >= HEADER_SIZE) {
      const length = file.readUInt16LE(pos + 4);
      const type = file[pos + 6]!;
      if (pos + HEADER_SIZE + length > end) {
        if (atEof) return { records }; // torn at the end: the writer died mid-record
        return { damage: 'a MANIFEST record runs past its block' };
      }
      if (type === 0 && length === 0) break; // preallocated zeros: the rest of the block is empty
      const body = file.subarray(pos + 6, pos + HEADER_SIZE + length); // type and data
      if (masked(crc32c(body)) !== file.readUInt32LE(pos)) return { damage: 'a MANIFEST record fails its checksum' };
      const data = file.subarray(pos + HEADER_SIZE, pos + HEADER_SIZE + length);
      pos += HEADER_SIZE + length;
      if (type === 1 && fragments === undefined) records.push(data);
      else if (type === 2 && fragments === undefined) fragments = [data];
      else if (type === 3 && fragments !== undefined) fragments.push(data);
      else if (type === 4 && fragments !== undefined) {
        records.push(Buffer.concat([...fragments, data]));
        fragments = undefined;
      } else return { damage: `a MANIFEST record of type ${type} is out of place` };
    }
  }
  return { records }; // a first fragment without its end is a torn write too
}

/** Reads varints and slices of one VersionEdit. */
class EditReader {
  private pos = 0;
  constructor(private readonly bytes: Buffer) {}

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  /** A varint of up to 64 bits; the numbers here (file numbers and sizes) stay below 2^53. */
  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      const byte = this.bytes[this.pos++];
      if (byte === undefined) throw new Error('a varint runs past the record');
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new Error('a varint is too long');
  }

  slice(): void {
    const length = this.varint();
    if (this.pos + length > this.bytes.length) throw new Error('a key runs past the record');
    this.pos += length;
  }
}

/** The tables a MANIFEST lists as live (file number → recorded size), or what is wrong with it. */
function liveTables(records: Buffer[]): { tables: Map<number, number> } | { damage: string } {
  const tables = new Map<string, { number: number; size: number }>();
  const seen = new Set<number>();
  try {
    for (const record of records) {
      const edit = new EditReader(record);
      while (!edit.done) {
        const tag = edit.varint();
        seen.add(tag);
        if (tag === 1) edit.slice();
        else if (tag === 2 || tag === 3 || tag === 4 || tag === 9) edit.varint();
        else if (tag === 5) {
          edit.varint();
          edit.slice();
        } else if (tag === 6) tables.delete(`${edit.varint()}/${edit.varint()}`);
        else if (tag === 7) {
          const level = edit.varint();
          const number = edit.varint();
          const size = edit.varint();
          edit.slice();
          edit.slice();
          tables.set(`${level}/${number}`, { number, size });
        } else throw new Error(`unknown tag ${tag}`);
      }
    }
  } catch (error) {
    return { damage: `the MANIFEST cannot be read (${(error as Error).message})` };
  }
  // LevelDB's recovery refuses a MANIFEST without these.
  for (const [tag, what] of [
    [3, 'next file number'],
    [2, 'log number'],
    [4, 'last sequence'],
  ] as const) {
    if (!seen.has(tag)) return { damage: `the MANIFEST has no ${what}` };
  }
  return { tables: new Map([...tables.values()].map((t) => [t.number, t.size])) };
}

/** Whether a table is there with at least its recorded size and its footer's magic number where LevelDB reads it. */
async function tableDamage(dir: string, number: number, size: number): Promise<LevelDamage> {
  const base = String(number).padStart(6, '0');
  for (const name of [`${base}.ldb`, `${base}.sst`]) {
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info === undefined) continue;
    if (size < FOOTER_SIZE || info.size < size) return `the table ${name} is truncated (${info.size} of ${size} bytes)`;
    const handle = await open(path, 'r');
    try {
      const magic = Buffer.alloc(TABLE_MAGIC.length);
      await handle.read(magic, 0, magic.length, size - magic.length);
      return magic.equals(TABLE_MAGIC) ? undefined : `the table ${name} has no table footer`;
    } finally {
      await handle.close();
    }
  }
  return `the table ${base}.ldb is missing`;
}

/**
 * What is wrong with the LevelDB files in `dir` (which holds CURRENT), read
 * only: CURRENT, the MANIFEST it names, and every live table.
 */
export async function levelDamage(dir: string): Promise<LevelDamage> {
  const current = await readFile(join(dir, 'CURRENT'), 'latin1');
  const name = /^(MANIFEST-\d+)\n$/.exec(current)?.[1];
  if (name === undefined) return 'its CURRENT file does not name a MANIFEST';
  let manifest: Buffer;
  try {
    manifest = await readFile(join(dir, name));
  } catch {
    return `its ${name} is missing`;
  }
  const log = logRecords(manifest);
  if ('damage' in log) return log.damage;
  const live = liveTables(log.records);
  if ('damage' in live) return live.damage;
  for (const [number, size] of live.tables) {
    const damage = await tableDamage(dir, number, size);
    if (damage !== undefined) return damage;
  }
  return undefined;
}
