/**
 * Fastify compiles every route's validators (ajv) and response serializers
 * (fast-json-stringify) while the app gets ready: most of a manager's
 * start-up CPU, for some hundred schemas of which one run serves a few. These
 * compiler factories are fastify's own (the same packages, options and
 * shared schemas), each schema compiled when its route first needs it.
 * (fastify treats custom compilers alike but for header schemas, which it
 * then leaves as they are rather than lower-case their names: the route
 * table declares none.)
 * test/manager/http/lazy-compilers.test.ts compiles every one of them.
 */
import ajvCompiler from '@fastify/ajv-compiler';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

type BuildValidator = ReturnType<typeof ajvCompiler>;
type BuildSerializer = ReturnType<typeof SerializerSelector>;
type Validate = ((data: unknown) => unknown) & { errors?: unknown };

/** The compilations still deferred: how many, and running them all now (returns how many ran). */
export interface Deferred {
  count(): number;
  compileAll(): number;
}

/**
 * fastify's `schemaController.compilersFactory`, compiling on first use;
 * `deferred` counts, or compiles now, the schemas not yet compiled.
 */
export function lazyCompilers(): {
  compilersFactory: { buildValidator: BuildValidator; buildSerializer: BuildSerializer };
  deferred: Deferred;
} {
  const pending = new Set<() => void>();
  const defer = <F>(build: () => F): (() => F) => {
    let built: F | undefined;
    const get = (): F => {
      if (built === undefined) {
        built = build();
        pending.delete(get);
      }
      return built;
    };
    pending.add(get);
    return get;
  };
  const validators = ajvCompiler();
  const serializers = SerializerSelector();
  const buildValidator = ((externalSchemas: Parameters<BuildValidator>[0], options: Parameters<BuildValidator>[1]) => {
    const compile = validators(externalSchemas, options);
    return (route: Parameters<typeof compile>[0]) => {
      const real = defer(() => compile(route) as Validate);
      // fastify reads a failed validation's reasons from the function's `errors`.
      const validate: Validate = (data) => {
        const check = real();
        const result = check(data);
        validate.errors = check.errors;
        return result;
      };
      return validate;
    };
  }) as BuildValidator;
  const buildSerializer: BuildSerializer = (externalSchemas, options) => {
    const compile = serializers(externalSchemas, options);
    return (route) => {
      const real = defer(() => compile(route));
      return (doc) => real()(doc);
    };
  };
  return {
    compilersFactory: { buildValidator, buildSerializer },
    deferred: {
      count: () => pending.size,
      compileAll: () => {
        const due = [...pending];
        for (const get of due) get();
        return due.length;
      },
    },
  };
}
