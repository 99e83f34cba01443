/** muster's version, as `muster --version` and the OpenAPI description say it (package.json's; a test keeps them equal). */
export const MUSTER_VERSION = '0.2.0';
