/**
 * Turns kbridge's launch-configuration JSON Schema (`config-schema/schema/launch.json`,
 * what `kbridge schema launch` prints) into the `configurationAttributes` VS Code wants in
 * `contributes.debuggers`. `npm run generate` writes the result into package.json and a
 * test regenerates it and compares, so the two cannot drift.
 *
 * VS Code merges these attributes into its own launch.json schema, so the output must
 * stand alone: `$ref`s into `$defs` are inlined (they would otherwise point into VS Code's
 * schema), `null` alternatives of optional keys are dropped (users never write `null`
 * there; it only clutters completion), and `const` choices become `enum` +
 * `enumDescriptions`, which VS Code shows in completion.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Keys VS Code itself owns on every configuration; it adds its own schema for them. */
const VSCODE_OWNED = new Set(['type', 'request', 'name']);

/** Keys that only matter to a full JSON Schema validator, not to VS Code's editor. */
const DROPPED = new Set(['$schema', '$defs', 'format', 'title']);

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNullSchema(value: Json): boolean {
  return isObject(value) && value.type === 'null' && Object.keys(value).length === 1;
}

function resolveRef(root: JsonObject, ref: string): JsonObject {
  const prefix = '#/$defs/';
  if (!ref.startsWith(prefix)) throw new Error(`unsupported $ref ${ref} in the launch schema`);
  const defs = root.$defs;
  const target = isObject(defs) ? defs[ref.slice(prefix.length)] : undefined;
  if (!isObject(target)) throw new Error(`$ref ${ref} not found in the launch schema`);
  return target;
}

/** Inlines refs and rewrites one schema node into the form VS Code reads best. */
function convert(root: JsonObject, node: Json): Json {
  if (Array.isArray(node)) return node.map((item) => convert(root, item));
  if (!isObject(node)) return node;

  let source: JsonObject = { ...node };
  if (typeof source.$ref === 'string') {
    // The referring node's own description is more specific than the definition's.
    const { $ref, ...rest } = source;
    source = { ...resolveRef(root, $ref as string), ...rest };
  }

  // schemars writes an optional key as `X or null` with `default: null`; only there is the
  // null dropped. Elsewhere null means something (`env: {"NAME": null}` unsets NAME).
  const optional = source.default === null;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(source)) {
    if (DROPPED.has(key)) continue;
    if (key === 'default' && value === null) continue;
    if (key === 'type' && Array.isArray(value) && optional) {
      const kept = value.filter((t) => t !== 'null');
      out.type = kept.length === 1 ? kept[0] : kept;
      continue;
    }
    if (key === 'properties' && isObject(value)) {
      const props: JsonObject = {};
      for (const [name, schema] of Object.entries(value)) props[name] = convert(root, schema);
      out.properties = props;
      continue;
    }
    out[key] = convert(root, value);
  }

  for (const combinator of ['anyOf', 'oneOf'] as const) {
    const options = out[combinator];
    if (!Array.isArray(options)) continue;
    const kept = optional ? options.filter((option) => !isNullSchema(option)) : options;
    if (kept.length === 1 && isObject(kept[0])) {
      // `X or null` is just X; keep the outer description, which names the key's role.
      delete out[combinator];
      const single = kept[0];
      for (const [key, value] of Object.entries(single)) {
        if (key === 'description' && out.description !== undefined) continue;
        out[key] = value;
      }
    } else if (kept.length > 0 && kept.every((o) => isObject(o) && typeof o.const === 'string')) {
      delete out[combinator];
      out.type = 'string';
      out.enum = kept.map((o) => (o as JsonObject).const);
      out.enumDescriptions = kept.map((o) => ((o as JsonObject).description as string) ?? '');
    } else {
      out[combinator] = kept;
    }
  }

  // The schema's descriptions use Markdown (backticks); VS Code renders markdownDescription.
  if (typeof out.description === 'string') out.markdownDescription = out.description;
  return out;
}

/** The attributes for one request kind (`launch` and `attach` take the same keys). */
export function requestAttributes(schema: JsonObject): JsonObject {
  const converted = convert(schema, schema) as JsonObject;
  const properties: JsonObject = {};
  for (const [name, value] of Object.entries((converted.properties as JsonObject) ?? {})) {
    if (!VSCODE_OWNED.has(name)) properties[name] = value;
  }
  const out: JsonObject = { properties };
  if (Array.isArray(converted.required)) {
    out.required = converted.required.filter((k) => !VSCODE_OWNED.has(k as string));
  }
  return out;
}

/** `contributes.debuggers[].configurationAttributes` for the `bridge` type. */
export function configurationAttributes(schema: JsonObject): JsonObject {
  const attributes = requestAttributes(schema);
  return { launch: attributes, attach: attributes };
}

/** The preset names the schema allows for `debugger`, in schema order. */
export function presetNames(schema: JsonObject): string[] {
  const preset = resolveRef(schema, '#/$defs/Preset');
  const options = (preset.oneOf ?? preset.anyOf) as Json[] | undefined;
  if (!Array.isArray(options)) throw new Error('the launch schema has no preset list');
  return options.map((o) => (o as JsonObject).const as string);
}
