/** Page sizes of the list routes (no schema code here: the CLI reads them at start-up). */

/** Page sizes of GET /v1/nodes: an answer stays small however many nodes joined (30,000 nodes in one answer were 260 MB). */
export const NODES_PAGE = { default: 500, max: 1000 } as const;
