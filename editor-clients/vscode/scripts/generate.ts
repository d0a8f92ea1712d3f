/**
 * `npm run generate`: rewrites `contributes.debuggers[bridge].configurationAttributes` in
 * package.json from config-schema/schema/launch.json. Run it whenever the schema changes;
 * `npm test` fails until it has been run (test/contribution.test.js).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { configurationAttributes, JsonObject } from '../src/attributes';

// Compiled to out/scripts/, so the package root is two levels up.
const PACKAGE_DIR = path.resolve(__dirname, '..', '..');
export const SCHEMA_PATH = path.resolve(PACKAGE_DIR, '..', '..', 'config-schema', 'schema', 'launch.json');

function main(): void {
  const schema = JSON.parse(fs.readFileSync(SCHEMA_PATH, 'utf8')) as JsonObject;
  const manifestPath = path.join(PACKAGE_DIR, 'package.json');
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  const bridge = manifest.contributes.debuggers.find((d: { type: string }) => d.type === 'bridge');
  bridge.configurationAttributes = configurationAttributes(schema);
  fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
  console.log(`configurationAttributes regenerated from ${path.relative(PACKAGE_DIR, SCHEMA_PATH)}`);
}

main();
