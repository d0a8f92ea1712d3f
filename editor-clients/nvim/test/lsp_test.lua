--- `kbridge lsp` through Neovim's own LSP client (vim.lsp, Neovim 0.7), started by
--- require('kbridge').lsp_setup() as a user's config would: a KubernetesLocalProcessConfig.yaml
--- with a misspelt key gets its diagnostic, completion offers the token kinds after `$(`,
--- hover explains `$(services:…)`, and the server exits 0 after shutdown. Then, with the
--- fixture cluster's kubeconfig (KBRIDGE_TEST_KUBECONFIG, which test/run.sh sets when it
--- starts the fixture cluster as root), a second server gives live completion — the
--- namespace's Services after `$(services:` — and a code action whose edit Neovim applies.
--- Needs the built kbridge in KBRIDGE_BIN (test/run.sh passes it).
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
vim.opt.runtimepath:prepend(vim.fn.fnamemodify(here, ':h'))

local harness = dofile(here .. '/harness.lua')
local test = harness.test

local function check(condition, what)
  if not condition then
    error(what, 2)
  end
end

local kbridge = os.getenv('KBRIDGE_BIN') or ''
if kbridge == '' or vim.fn.executable(kbridge) ~= 1 then
  io.stdout:write('not ok - KBRIDGE_BIN must name the built kbridge (got "' .. kbridge .. '")\n0 passed, 1 failed\n')
  vim.cmd('cquit 1')
end

local dir = vim.fn.tempname()
vim.fn.mkdir(dir, 'p')
local file = dir .. '/KubernetesLocalProcessConfig.yaml'
vim.fn.writefile({
  'version: 0.1',
  'volumeMount:',
  '  - name: config',
  'env:',
  '  - name: STATS_URL',
  '    value: http://$(services:stats-api)/',
}, file)

local exit_code = nil
require('kbridge').lsp_setup({
  path = kbridge,
  on_exit = function(code)
    exit_code = code
  end,
})
vim.cmd('edit ' .. file)
local bufnr = vim.api.nvim_get_current_buf()

local function client()
  return vim.lsp.get_active_clients()[1]
end

test('the server attaches to the file', function()
  check(vim.wait(10000, function()
    return client() ~= nil and client().initialized
  end, 20), 'kbridge lsp did not initialize')
  check(client().name == 'kbridge', 'client name ' .. tostring(client().name))
  check(vim.lsp.buf_is_attached(bufnr, client().id), 'not attached to the buffer')
end)

test('a misspelt key gets a diagnostic with a suggestion, on the key', function()
  check(vim.wait(10000, function()
    return #vim.diagnostic.get(bufnr) > 0
  end, 20), 'no diagnostic arrived')
  local d = vim.diagnostic.get(bufnr)[1]
  check(d.message:find('did you mean `volumeMounts`?', 1, true), d.message)
  check(d.lnum == 1 and d.col == 0 and d.end_col == 11, vim.inspect(d))
  check(d.severity == vim.diagnostic.severity.ERROR, 'severity ' .. tostring(d.severity))
end)

test('fixing the key clears the diagnostic (incremental change)', function()
  vim.api.nvim_buf_set_text(bufnr, 1, 11, 1, 11, { 's' })
  check(vim.wait(10000, function()
    return #vim.diagnostic.get(bufnr) == 0
  end, 20), vim.inspect(vim.diagnostic.get(bufnr)))
end)

local function request(method, line, character)
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = line, character = character },
  }
  local answers = vim.lsp.buf_request_sync(bufnr, method, params, 5000) or {}
  local answer = answers[client().id] or {}
  check(answer.err == nil, vim.inspect(answer.err))
  return answer.result
end

test('completion offers the token kinds after $(', function()
  local result = request('textDocument/completion', 5, 20)
  local items = result and (result.items or result) or {}
  local labels = {}
  for _, item in ipairs(items) do
    table.insert(labels, item.label)
  end
  check(vim.deep_equal(labels, { 'volumeMounts', 'services', 'externalEndpoints' }), vim.inspect(labels))
end)

test('completion offers keys at the cursor level', function()
  local result = request('textDocument/completion', 2, 4)
  local labels = {}
  for _, item in ipairs(result or {}) do
    labels[item.label] = true
  end
  check(labels.name and labels.localPath, vim.inspect(result))
end)

test('hover explains what $(services:stats-api) becomes', function()
  local result = request('textDocument/hover', 5, 24)
  local text = result and result.contents and result.contents.value or ''
  check(text:find('Service `stats-api`', 1, true) and text:find('127.1.0.x', 1, true), vim.inspect(result))
end)

test('the server exits 0 after shutdown', function()
  client().stop()
  check(vim.wait(10000, function()
    return exit_code ~= nil
  end, 20), 'the server did not exit')
  check(exit_code == 0, 'exit code ' .. tostring(exit_code))
end)

-- Live cluster data: a workspace whose launch.json bridges todo-api.
local kubeconfig = os.getenv('KBRIDGE_TEST_KUBECONFIG') or ''
if kubeconfig == '' then
  io.stdout:write('# skipped: live completion (no KBRIDGE_TEST_KUBECONFIG: run as root through test/run.sh)\n')
else
  local live = vim.fn.tempname()
  vim.fn.mkdir(live .. '/.vscode', 'p')
  vim.fn.writefile({
    '{"configurations": [{"type": "bridge", "name": "api", "debugger": "debugpy",',
    '  "bridge": {"namespace": "todo", "service": "todo-api"}}]}',
  }, live .. '/.vscode/launch.json')
  local live_file = live .. '/KubernetesLocalProcessConfig.yaml'
  vim.fn.writefile({
    'env:',
    '  - name: CA',
    '    value: $(volumeMounts:certs)/ca.pem',
    '  - name: STATS',
    '    value: $(services:s',
  }, live_file)
  exit_code = nil
  require('kbridge').lsp_setup({
    path = kbridge,
    cmd_env = { KUBECONFIG = kubeconfig },
    on_exit = function(code)
      exit_code = code
    end,
  })
  vim.cmd('edit ' .. live_file)
  bufnr = vim.api.nvim_get_current_buf()

  test('live completion lists the namespace\'s Services from the cluster', function()
    check(vim.wait(10000, function()
      return client() ~= nil and client().initialized
    end, 20), 'kbridge lsp did not initialize')
    local labels = {}
    -- The cluster is read in the background: ask until its Services are there.
    check(vim.wait(30000, function()
      labels = {}
      for _, item in ipairs(request('textDocument/completion', 4, 23) or {}) do
        labels[item.label] = true
      end
      return labels['stats-api'] ~= nil
    end, 200), 'no stats-api in ' .. vim.inspect(labels))
    check(labels['todo-api'], vim.inspect(labels))
  end)

  test('a code action adds the missing volumeMounts entry, applied by Neovim', function()
    local params = {
      textDocument = { uri = vim.uri_from_bufnr(bufnr) },
      range = { start = { line = 2, character = 15 }, ['end'] = { line = 2, character = 15 } },
      context = { diagnostics = {} },
    }
    local answers = vim.lsp.buf_request_sync(bufnr, 'textDocument/codeAction', params, 5000) or {}
    local actions = (answers[client().id] or {}).result or {}
    check(#actions == 1 and actions[1].title == 'Add `certs` to volumeMounts', vim.inspect(actions))
    vim.lsp.util.apply_workspace_edit(actions[1].edit, 'utf-16')
    local text = table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false), '\n')
    check(text:find('$(services:s\nvolumeMounts:\n  - name: certs', 1, true), text)
  end)

  test('the live server exits 0 after shutdown', function()
    client().stop()
    check(vim.wait(10000, function()
      return exit_code ~= nil
    end, 20), 'the server did not exit')
    check(exit_code == 0, 'exit code ' .. tostring(exit_code))
  end)
  vim.fn.delete(live, 'rf')
end

vim.fn.delete(dir, 'rf')
harness.finish()
