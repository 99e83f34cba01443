/**
 * Every test file runs with the umask the real CLI sets in main.ts (077), so
 * commands run in-process create LevelDB's files as `muster` would. Tests
 * about other umasks set their own and restore it.
 */
process.umask(0o077);
