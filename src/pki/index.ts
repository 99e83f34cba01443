/** The PKI: roots, keys, CSRs, issuing and verifying. Pure functions over bytes and PEM. */
export * from './ca.js';
export * from './csr.js';
export * from './issue.js';
export * from './keys.js';
export * from './peer.js';
export { readPemBlocks, toPem } from './der.js';
