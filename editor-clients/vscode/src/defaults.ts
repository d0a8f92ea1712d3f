/**
 * What the extension adds to a `bridge` configuration before launch. Only the user's
 * settings are applied here; everything else is kbridge's job.
 */

export interface ExtensionSettings {
  /** `kbridge.disconnectAfterDebugging`: the default for `bridge.disconnectAfterDebugging`. */
  disconnectAfterDebugging: boolean;
}

type Config = { [key: string]: unknown };

/**
 * Returns the configuration to launch: `bridge.disconnectAfterDebugging` is filled in from
 * the setting when the configuration has a `bridge` block that does not say. A
 * configuration without a `bridge` block debugs locally and has no session to keep.
 */
export function applySettings<T extends Config>(config: T, settings: ExtensionSettings): T {
  const bridge = config.bridge;
  if (typeof bridge !== 'object' || bridge === null || Array.isArray(bridge)) return config;
  if ('disconnectAfterDebugging' in bridge) return config;
  return {
    ...config,
    bridge: { ...bridge, disconnectAfterDebugging: settings.disconnectAfterDebugging },
  };
}
