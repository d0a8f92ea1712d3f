--- The plugin end to end in real (headless) Neovim: a dap configuration made bridged with
--- kbridge.bridge(), the adapter the plugin's `bridge` adapter function hands nvim-dap,
--- started and driven the way nvim-dap drives it (test/dap_client.lua stands in for
--- nvim-dap's session) through the real kbridge and debugpy: a breakpoint, "stopped",
--- the variables, an evaluation, continue to the next stop, disconnect, kbridge exits 0.
---
--- Locally always; bridged to todo-api when run.sh started the fixture cluster
--- (KBRIDGE_TEST_KUBECONFIG), with the pod's Secret at the breakpoint, stats-api by its
--- cluster name, and the Deployment's pod template as it was afterwards.
--- Needs KBRIDGE_BIN and debugpy.
vim.opt.runtimepath:prepend(vim.fn.getcwd())
package.path = vim.fn.getcwd() .. '/test/?.lua;' .. package.path

local Client = require('dap_client')
local dap = require('dap_stub')
local kbridge = require('kbridge')

local harness = dofile(vim.fn.getcwd() .. '/test/harness.lua')
local test = harness.test

--- Writes app.py under `dir`: reads the environment variable `var` into `name`, then stops
--- twice on its BREAK line. Returns the path and that line's number.
local function write_program(dir, name, var)
  vim.fn.mkdir(dir, 'p')
  local path = dir .. '/app.py'
  vim.fn.writefile({
    'import os',
    ('%s = os.environ.get("%s", "<unset>")'):format(name, var),
    'for visit in range(1, 3):',
    ('    print("probe", visit, %s)  # BREAK'):format(name),
  }, path)
  return path, 4
end

--- The user's nvim-dap configuration for `program`, made bridged (`opts` as kbridge.bridge's).
local function bridged_config(program, extra, opts)
  local config = { type = 'python', request = 'launch', name = 'app', program = program, console = 'internalConsole' }
  return kbridge.bridge(vim.tbl_extend('force', config, extra or {}), opts)
end

--- The value of `name` in the first non-expensive scope that has it.
local function variable(client, frame_id, name)
  for _, scope in ipairs(client:request('scopes', { frameId = frame_id }).scopes) do
    if not scope.expensive then
      local vars = client:request('variables', { variablesReference = scope.variablesReference }).variables
      for _, v in ipairs(vars) do
        if v.name == name then
          return v.value
        end
      end
    end
  end
  error('no variable ' .. name)
end

local function top_frame(client, thread_id)
  return client:request('stackTrace', { threadId = thread_id, startFrame = 0, levels = 1 }).stackFrames[1]
end

--- nvim-dap's start-up: initialize, launch, (initialized) setBreakpoints and
--- configurationDone, then the first stop. Returns the stopped thread.
local function launch_to_breakpoint(client, config, program, line, timeout_ms)
  client:request('initialize', {
    clientID = 'neovim',
    clientName = 'neovim',
    adapterID = config.type,
    pathFormat = 'path',
    linesStartAt1 = true,
    columnsStartAt1 = true,
    supportsVariableType = true,
    locale = 'en_US',
  })
  local launch = client:request_async('launch', config)
  client:wait_event('initialized', timeout_ms)
  local set = client:request('setBreakpoints', { source = { path = program }, breakpoints = { { line = line } } })
  assert(set.breakpoints[1].verified ~= false, 'breakpoint not verified: ' .. vim.inspect(set))
  client:request('configurationDone')
  client:wait_response(launch, 'launch', timeout_ms)
  local stopped = client:wait_event('stopped', timeout_ms)
  assert(stopped.reason == 'breakpoint', 'stopped for ' .. tostring(stopped.reason))
  return stopped.threadId
end

--- Continue to the loop's second stop, then disconnect; kbridge must exit 0.
local function continue_then_disconnect(client, thread_id)
  client:request('continue', { threadId = thread_id })
  local again = client:wait_event('stopped')
  assert(variable(client, top_frame(client, again.threadId).id, 'visit') == '2', 'the second stop')
  client:request('disconnect', { restart = false, terminateDebuggee = true })
  local code = client:wait_exit()
  assert(code == 0, ('kbridge exited with %s; stderr:\n%s'):format(code, client:stderr_text()))
end

kbridge.setup({ path = os.getenv('KBRIDGE_BIN'), dap = dap, commands = false })
local scratch = vim.fn.tempname()

test('a bridged python configuration through the real kbridge and debugpy, locally', function()
  local program, line = write_program(scratch .. '/local', 'user_var', 'KBRIDGE_TEST_VAR')
  -- Made bridged without a cluster target: a local session with kbridge's environment.
  local config = bridged_config(program, { env = { KBRIDGE_TEST_VAR = 'from-neovim' } })
  local client = Client.start(dap.launch(config))
  local thread = launch_to_breakpoint(client, config, program, line)
  local frame = top_frame(client, thread)
  assert(frame.line == line, 'stopped at line ' .. tostring(frame.line))
  assert(variable(client, frame.id, 'user_var') == "'from-neovim'", 'user_var')
  local result = client:request('evaluate', { expression = 'user_var.upper()', frameId = frame.id, context = 'repl' })
  assert(result.result == "'FROM-NEOVIM'", 'evaluate: ' .. tostring(result.result))
  continue_then_disconnect(client, thread)
end)

local kubeconfig = os.getenv('KBRIDGE_TEST_KUBECONFIG')
if kubeconfig and kubeconfig ~= '' then
  test('bridged to todo-api on the fixture cluster: the pod\'s Secret, stats-api by name, restored', function()
    local function template()
      local out = vim.fn.system({ 'kubectl', '--kubeconfig', kubeconfig, '-n', 'todo', 'get', 'deployment', 'todo-api', '-o', 'json' })
      assert(vim.v.shell_error == 0, 'kubectl: ' .. out)
      return vim.fn.json_decode(out).spec.template
    end
    local before = template()
    local program, line = write_program(scratch .. '/cluster', 'api_key', 'API_KEY')
    local config = bridged_config(program, nil, { bridge = { namespace = 'todo', service = 'todo-api', ports = { 18089 } } })
    vim.env.KUBECONFIG = kubeconfig
    local client = Client.start(dap.launch(config))
    local thread = launch_to_breakpoint(client, config, program, line, 180000)
    local frame = top_frame(client, thread)
    assert(variable(client, frame.id, 'api_key') == "'s3cr3t-from-cluster'", "the pod's Secret")
    local stats = client:request('evaluate', {
      expression = "__import__('urllib.request').request.urlopen('http://stats-api/stats', timeout=10).read().decode()",
      frameId = frame.id,
      context = 'repl',
    })
    assert(stats.result:find('stats-api', 1, true), 'stats-api by name: ' .. tostring(stats.result))
    assert(client:output():find('bridged deployment/todo-api', 1, true), 'the session notice')
    continue_then_disconnect(client, thread)
    assert(vim.deep_equal(template(), before), 'the pod template is exactly as it was')
  end)
else
  io.stdout:write('skip - bridged to the fixture cluster: KBRIDGE_TEST_KUBECONFIG not set (run.sh sets it as root)\n')
end

vim.fn.delete(scratch, 'rf')
harness.finish()
