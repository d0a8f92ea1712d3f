--- kbridge for nvim-dap: registers the `bridge` adapter, turns existing dap configurations
--- into bridged ones, and adds :KbridgeStatus / :KbridgeRestore.
---
--- kbridge does the work (the cluster session, the real debugger, the environment); this
--- module only starts `kbridge dap --debugger <preset>` the way nvim-dap expects and runs
--- `kbridge status` / `kbridge restore`. Written for Neovim >= 0.7 (no vim.system, no
--- vim.fs), so it works with the nvim-dap versions that still support 0.7.
local M = {}

--- nvim-dap adapter names commonly used in dap.adapters / dap.configurations, mapped to
--- the kbridge preset that starts the same debugger.
M.preset_for_type = {
  python = 'debugpy',
  debugpy = 'debugpy',
  lldb = 'lldb-dap',
  ['lldb-dap'] = 'lldb-dap',
  lldb_dap = 'lldb-dap',
  codelldb = 'codelldb',
  go = 'dlv',
  delve = 'dlv',
  dlv = 'dlv',
  ['pwa-node'] = 'js-debug',
  node = 'js-debug',
  ['js-debug'] = 'js-debug',
  coreclr = 'netcoredbg',
  netcoredbg = 'netcoredbg',
}

local INSTALL_HINT = 'Install it with `cargo install --path adapter` from a kbridge checkout, '
  .. 'or download a release binary, then put it on PATH or pass setup{ path = ... }.'

local defaults = {
  --- Path of the kbridge executable; nil: the first `kbridge` on PATH.
  path = nil,
  --- The nvim-dap module; tests pass a stand-in.
  dap = nil,
  --- Create :KbridgeStatus and :KbridgeRestore.
  commands = true,
}

M.options = vim.deepcopy(defaults)

local function notify(message, level)
  vim.notify('kbridge: ' .. message, level or vim.log.levels.INFO)
end

--- The kbridge executable, or nil and a message saying how to get one.
function M.executable()
  local path = M.options.path
  if path and path ~= '' then
    path = vim.fn.expand(path)
    if vim.fn.executable(path) == 1 then
      return path
    end
    return nil, ('kbridge not found at %s (setup{ path = ... }). %s'):format(path, INSTALL_HINT)
  end
  local found = vim.fn.exepath('kbridge')
  if found ~= '' then
    return found
  end
  return nil, 'kbridge was not found on PATH. ' .. INSTALL_HINT
end

--- The executable adapter nvim-dap should start for one configuration. A preset name in
--- `debugger` becomes `--debugger`, so kbridge starts the real adapter at `initialize`; a
--- custom `debugger` table is read by kbridge itself at `launch`.
function M.adapter_for(config)
  local command, err = M.executable()
  if not command then
    return nil, err
  end
  local args = { 'dap' }
  if type(config.debugger) == 'string' and config.debugger ~= '' then
    table.insert(args, '--debugger')
    table.insert(args, config.debugger)
  end
  -- kbridge starts the real adapter before it sees `cwd`, and Delve builds in its own
  -- working directory: start kbridge where the program lives.
  local cwd = config.cwd
  if type(cwd) ~= 'string' or cwd:sub(1, 1) ~= '/' then
    cwd = vim.fn.getcwd()
  end
  return { type = 'executable', command = command, args = args, options = { cwd = cwd } }
end

--- nvim-dap's adapter function: called with the resolved configuration at each launch.
local function bridge_adapter(callback, config)
  local adapter, err = M.adapter_for(config)
  if not adapter then
    -- nvim-dap has no error path for function adapters; not calling back ends the launch,
    -- so say why loudly.
    notify(err, vim.log.levels.ERROR)
    return
  end
  callback(adapter)
end

--- A bridged copy of an existing dap configuration: `type = 'bridge'`, `debugger` from the
--- original adapter type (or opts.debugger), and the `bridge` block from opts.bridge.
--- Everything else goes to the real debugger unchanged, as kbridge forwards it.
function M.bridge(config, opts)
  opts = opts or {}
  local preset = opts.debugger or config.debugger or M.preset_for_type[config.type]
  if not preset then
    error(
      ("kbridge: no preset for dap adapter type '%s'; pass { debugger = 'debugpy' | 'lldb-dap' | ... }"):format(
        tostring(config.type)
      ),
      2
    )
  end
  local bridged = vim.deepcopy(config)
  bridged.type = 'bridge'
  bridged.debugger = preset
  bridged.name = opts.name or ((config.name or 'program') .. ' (kbridge)')
  bridged.bridge = vim.tbl_deep_extend('force', bridged.bridge or {}, opts.bridge or {})
  return bridged
end

--- Appends a bridged copy of every non-bridged configuration of `filetype` to
--- dap.configurations[filetype]; returns the copies.
function M.add_bridged(filetype, opts)
  local dap = M.options.dap or require('dap')
  local configs = dap.configurations[filetype] or {}
  local added = {}
  for _, config in ipairs(vim.deepcopy(configs)) do
    if config.type ~= 'bridge' then
      table.insert(added, M.bridge(config, opts))
    end
  end
  for _, config in ipairs(added) do
    table.insert(configs, config)
  end
  dap.configurations[filetype] = configs
  return added
end

--- Runs `kbridge <args>` without blocking the editor; shows its output when it ends and
--- calls on_exit(code, lines). Returns the job id, or nil when kbridge is missing.
function M.run(args, on_exit)
  local command, err = M.executable()
  if not command then
    notify(err, vim.log.levels.ERROR)
    return nil
  end
  local cmd = { command }
  vim.list_extend(cmd, args)
  local output = {}
  local function collect(_, data)
    for _, line in ipairs(data or {}) do
      if line ~= '' then
        table.insert(output, line)
      end
    end
  end
  return vim.fn.jobstart(cmd, {
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = collect,
    on_stderr = collect,
    on_exit = function(_, code)
      local text = table.concat(output, '\n')
      if code == 0 then
        notify(('`kbridge %s`\n%s'):format(table.concat(args, ' '), text))
      else
        notify(('`kbridge %s` failed (exit %d)\n%s'):format(table.concat(args, ' '), code, text), vim.log.levels.ERROR)
      end
      if on_exit then
        on_exit(code, output)
      end
    end,
  })
end

--- Attaches `kbridge lsp` to KubernetesLocalProcessConfig.yaml, azds-local.env and
--- launch.json buffers (see lua/kbridge/lsp.lua); opts as there, `path` defaulting to setup's.
function M.lsp_setup(opts)
  local lsp_opts = vim.tbl_extend('force', { path = M.options.path }, opts or {})
  return require('kbridge.lsp').setup(lsp_opts)
end

function M.setup(opts)
  M.options = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  local dap = M.options.dap or require('dap')
  M.options.dap = dap
  dap.adapters.bridge = bridge_adapter
  -- Say at once when kbridge is missing rather than at the first launch.
  local _, err = M.executable()
  if err then
    notify(err, vim.log.levels.WARN)
  end
  if M.options.commands then
    -- fargs: `:KbridgeRestore --namespace todo todo-api` passes the words through.
    vim.api.nvim_create_user_command('KbridgeStatus', function(cmd)
      M.run(vim.list_extend({ 'status' }, cmd.fargs))
    end, { nargs = '*', desc = 'kbridge status: sessions and workloads marked in the cluster' })
    vim.api.nvim_create_user_command('KbridgeRestore', function(cmd)
      M.run(vim.list_extend({ 'restore' }, cmd.fargs))
    end, { nargs = '*', desc = 'kbridge restore: put back workloads a crashed session left modified' })
  end
  return M
end

return M
