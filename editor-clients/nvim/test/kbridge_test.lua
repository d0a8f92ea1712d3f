--- Headless tests for the kbridge Neovim plugin, run by test/run.sh as
--- `nvim --headless -u NONE -l`-style (`-c luafile`, for Neovim 0.7). nvim-dap is replaced by
--- test/dap_stub.lua and kbridge by a shell script that records its arguments.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
vim.opt.runtimepath:prepend(vim.fn.fnamemodify(here, ':h'))
package.loaded['dap'] = dofile(here .. '/dap_stub.lua')

local harness = dofile(here .. '/harness.lua')
local test = harness.test

local function eq(actual, expected, what)
  if not vim.deep_equal(actual, expected) then
    error(('%s:\n expected %s\n actual   %s'):format(what or 'values differ', vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

-- Captures vim.notify so tests can see what the user would.
local notes = {}
vim.notify = function(msg, level)
  table.insert(notes, { msg = msg, level = level })
end

-- A stand-in kbridge: writes its arguments to a file, prints a status-like line.
local bindir = vim.fn.tempname()
vim.fn.mkdir(bindir, 'p')
local argfile = bindir .. '/args'
local fake = bindir .. '/kbridge'
vim.fn.writefile({
  '#!/bin/sh',
  'printf "%s\\n" "$*" > "' .. argfile .. '"',
  'if [ "$1" = restore ] && [ "$2" = --fail ]; then echo "error: nothing to restore" >&2; exit 3; fi',
  'echo "fake kbridge $1: 0 sessions"',
}, fake)
vim.fn.setfperm(fake, 'rwxr-xr-x')
local saved_path = vim.env.PATH

local dap = require('dap')
local kbridge = require('kbridge')

test('setup{} registers dap.adapters.bridge as a function adapter', function()
  vim.env.PATH = bindir .. ':' .. saved_path
  kbridge.setup({})
  eq(type(dap.adapters.bridge), 'function', 'adapter type')
end)

test('the adapter runs `kbridge dap --debugger <preset>` from the configuration', function()
  local adapter = dap.launch({
    type = 'bridge', request = 'launch', name = 'app', debugger = 'debugpy',
    program = '/srv/app/app.py', cwd = '/srv/app',
  })
  eq(adapter, { type = 'executable', command = fake, args = { 'dap', '--debugger', 'debugpy' }, options = { cwd = '/srv/app' } })
end)

test('a custom debugger table is left to kbridge: plain `kbridge dap` in the editor cwd', function()
  local adapter = dap.launch({ type = 'bridge', request = 'launch', name = 'x', debugger = { command = 'my-dap', type = 'mine' } })
  eq(adapter.args, { 'dap' }, 'args')
  eq(adapter.options.cwd, vim.fn.getcwd(), 'cwd')
end)

test('setup{ path = ... } wins over PATH', function()
  vim.env.PATH = '/nonexistent'
  kbridge.setup({ path = fake })
  eq(dap.launch({ type = 'bridge', debugger = 'dlv' }).command, fake, 'command')
end)

test('without kbridge: an error naming the install command, and no adapter', function()
  vim.env.PATH = '/nonexistent'
  notes = {}
  kbridge.setup({})
  eq(#notes, 1, 'setup warns once')
  eq(notes[1].level, vim.log.levels.WARN, 'setup level')
  notes = {}
  eq(dap.launch({ type = 'bridge', debugger = 'debugpy' }), nil, 'adapter')
  eq(notes[1].level, vim.log.levels.ERROR, 'launch level')
  assert(notes[1].msg:find('cargo install --path adapter', 1, true), notes[1].msg)
  vim.env.PATH = bindir .. ':' .. saved_path
  kbridge.setup({})
end)

test('bridge() turns an existing configuration into a bridged one', function()
  local original = { type = 'python', request = 'launch', name = 'Launch file', program = '${file}', justMyCode = false }
  local bridged = kbridge.bridge(original, { bridge = { namespace = 'todo', service = 'todo-api', ports = { 8080 } } })
  eq(bridged, {
    type = 'bridge', request = 'launch', name = 'Launch file (kbridge)', debugger = 'debugpy',
    program = '${file}', justMyCode = false,
    bridge = { namespace = 'todo', service = 'todo-api', ports = { 8080 } },
  })
  eq(original.type, 'python', 'the original is untouched')
  eq(kbridge.bridge({ type = 'codelldb', name = 'n' }).debugger, 'codelldb', 'codelldb')
  eq(kbridge.bridge({ type = 'go', name = 'n' }).debugger, 'dlv', 'go')
  eq(kbridge.bridge({ type = 'pwa-node', name = 'n' }).debugger, 'js-debug', 'pwa-node')
  eq(kbridge.bridge({ type = 'coreclr', name = 'n' }).debugger, 'netcoredbg', 'coreclr')
  eq(kbridge.bridge({ type = 'lldb', name = 'n' }).debugger, 'lldb-dap', 'lldb')
  local ok, err = pcall(kbridge.bridge, { type = 'mystery', name = 'n' })
  assert(not ok and err:find("no preset for dap adapter type 'mystery'", 1, true), err)
  eq(kbridge.bridge({ type = 'mystery', name = 'n' }, { debugger = 'debugpy' }).debugger, 'debugpy', 'explicit')
end)

test('add_bridged() appends bridged copies to dap.configurations[ft], and they launch', function()
  dap.configurations.go = {
    { type = 'go', request = 'launch', name = 'Debug', mode = 'debug', program = '/src/svc' },
  }
  local added = kbridge.add_bridged('go', { bridge = { service = 'stats-api' } })
  eq(#added, 1, 'added')
  eq(#dap.configurations.go, 2, 'configurations')
  local bridged = dap.configurations.go[2]
  eq({ bridged.type, bridged.debugger, bridged.name, bridged.bridge }, { 'bridge', 'dlv', 'Debug (kbridge)', { service = 'stats-api' } })
  eq(dap.launch(bridged).args, { 'dap', '--debugger', 'dlv' }, 'adapter args')
  kbridge.add_bridged('go', { bridge = { service = 'stats-api' } })
  eq(#dap.configurations.go, 3, 'bridged entries are not bridged again')
end)

local function run_command(cmd)
  local before = #notes
  vim.fn.delete(argfile)
  vim.cmd(cmd)
  assert(vim.wait(10000, function() return #notes > before end, 20), cmd .. ' did not finish')
  return vim.fn.readfile(argfile)[1], notes[#notes]
end

test(':KbridgeStatus runs `kbridge status` and shows its output', function()
  local args, note = run_command('KbridgeStatus')
  eq(args, 'status', 'arguments')
  eq(note.level, vim.log.levels.INFO, 'level')
  assert(note.msg:find('fake kbridge status: 0 sessions', 1, true), note.msg)
  eq(run_command('KbridgeStatus --all-namespaces'), 'status --all-namespaces', 'arguments pass through')
end)

test(':KbridgeRestore runs `kbridge restore ARGS`; a failure is shown as an error', function()
  eq(run_command('KbridgeRestore --namespace todo deployment/todo-api'), 'restore --namespace todo deployment/todo-api', 'arguments')
  local _, note = run_command('KbridgeRestore --fail')
  eq(note.level, vim.log.levels.ERROR, 'level')
  assert(note.msg:find('exit 3', 1, true) and note.msg:find('nothing to restore', 1, true), note.msg)
end)

-- The real kbridge (test.sh sets KBRIDGE_BIN): the subcommand exists and its error,
-- here a missing kubeconfig, reaches the user as an error.
local real = vim.env.KBRIDGE_BIN
test(':KbridgeStatus with the real kbridge shows its error when there is no kubeconfig', function()
  if not real or vim.fn.executable(real) ~= 1 then
    io.stdout:write('    (skipped: set KBRIDGE_BIN to a built kbridge)\n')
    return
  end
  kbridge.setup({ path = real })
  local saved = vim.env.KUBECONFIG
  vim.env.KUBECONFIG = '/nonexistent/kubeconfig'
  local before = #notes
  vim.cmd('KbridgeStatus')
  assert(vim.wait(20000, function() return #notes > before end, 50), 'kbridge status did not finish')
  vim.env.KUBECONFIG = saved
  local note = notes[#notes]
  eq(note.level, vim.log.levels.ERROR, 'level')
  assert(note.msg:find('Sessions on this machine', 1, true), note.msg)
  assert(note.msg:find('cannot load the Kubernetes configuration', 1, true), note.msg)
end)

vim.fn.delete(bindir, 'rf')
harness.finish()
