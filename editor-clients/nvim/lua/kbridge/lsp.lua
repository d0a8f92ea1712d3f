--- `kbridge lsp` for Neovim's built-in LSP client: diagnostics, completion, hover and code
--- actions in KubernetesLocalProcessConfig.yaml, azds-local.env and launch.json, with live
--- data from the cluster of the current kubeconfig (docs/lsp.md). Uses only what
--- Neovim 0.7 has (vim.lsp.start_client, nvim_create_autocmd), so nvim-lspconfig is not
--- needed:
---
---   require('kbridge').lsp_setup()            -- or require('kbridge.lsp').setup{ path = ... }
local M = {}

--- File names the server reads; other files are left alone.
function M.is_bridge_file(path)
  local name = vim.fn.fnamemodify(path or '', ':t')
  return name:match('KubernetesLocalProcessConfig%.yaml$') ~= nil
    or name == 'azds-local.env'
    or name == 'launch.json'
end

M.options = { path = nil, on_exit = nil, cmd_env = nil }
local client_id = nil

--- Starts the server once per Neovim; returns its client id, or nil and why not.
function M.start()
  if client_id and vim.lsp.get_client_by_id(client_id) then
    return client_id
  end
  local exe, why = M.options.path, nil
  if not exe or exe == '' then
    exe, why = require('kbridge').executable()
  end
  if not exe then
    return nil, why
  end
  client_id = vim.lsp.start_client({
    name = 'kbridge',
    cmd = { exe, 'lsp' },
    cmd_env = M.options.cmd_env,
    root_dir = vim.fn.getcwd(),
    on_exit = function(code, signal, id)
      client_id = nil
      if M.options.on_exit then
        M.options.on_exit(code, signal, id)
      end
    end,
  })
  return client_id
end

--- Attaches the server to buffer `bufnr` when it holds a file the server reads.
function M.attach(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if not M.is_bridge_file(vim.api.nvim_buf_get_name(bufnr)) then
    return nil
  end
  local id, why = M.start()
  if not id then
    vim.notify('kbridge: ' .. (why or 'cannot start kbridge lsp'), vim.log.levels.WARN)
    return nil
  end
  vim.lsp.buf_attach_client(bufnr, id)
  return id
end

--- Attaches the server to those files as they are opened (and to those already open).
--- opts.path: the kbridge executable (default: as require('kbridge') finds it);
--- opts.on_exit: called with the server's exit code;
--- opts.cmd_env: extra environment for the server, e.g. { KUBECONFIG = '/path/config' }.
function M.setup(opts)
  M.options = vim.tbl_extend('force', M.options, opts or {})
  local group = vim.api.nvim_create_augroup('kbridge_lsp', { clear = true })
  vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
    group = group,
    pattern = { '*KubernetesLocalProcessConfig.yaml', 'azds-local.env', 'launch.json' },
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) then
      M.attach(bufnr)
    end
  end
end

return M
