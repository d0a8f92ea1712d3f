--- A small DAP client for the end-to-end test (a stand-in for nvim-dap's session, NOT
--- nvim-dap: no real nvim-dap can be installed on the test machine). It starts the
--- executable adapter the plugin produced exactly as nvim-dap does (command, args,
--- options.cwd, stdio pipes), frames messages with Content-Length headers, and lets the
--- test wait for responses and events with vim.wait, so Neovim's own event loop does the
--- I/O as it does for nvim-dap. Written for Neovim >= 0.7 (vim.loop, no vim.system).
local uv = vim.loop

local Client = {}
Client.__index = Client

--- Starts `adapter` ({ type = 'executable', command, args, options = { cwd } }).
function Client.start(adapter)
  assert(adapter.type == 'executable', 'only executable adapters: got ' .. tostring(adapter.type))
  local self = setmetatable({
    seq = 0,
    buffer = '',
    responses = {},
    events = {},
    stderr = {},
    exit_code = nil,
  }, Client)
  self.stdin = uv.new_pipe(false)
  self.stdout = uv.new_pipe(false)
  self.stderr_pipe = uv.new_pipe(false)
  local options = adapter.options or {}
  local handle, err = uv.spawn(adapter.command, {
    args = adapter.args,
    cwd = options.cwd,
    stdio = { self.stdin, self.stdout, self.stderr_pipe },
  }, function(code)
    self.exit_code = code
  end)
  assert(handle, ('could not start %s: %s'):format(adapter.command, tostring(err)))
  self.handle = handle
  self.stdout:read_start(function(read_err, chunk)
    assert(not read_err, read_err)
    if chunk then
      self.buffer = self.buffer .. chunk
      self:parse()
    end
  end)
  self.stderr_pipe:read_start(function(_, chunk)
    if chunk then
      table.insert(self.stderr, chunk)
    end
  end)
  return self
end

--- Takes every complete message off the front of the buffer.
function Client:parse()
  while true do
    local header_end = self.buffer:find('\r\n\r\n', 1, true)
    if not header_end then
      return
    end
    local length = tonumber(self.buffer:sub(1, header_end):match('Content%-Length: (%d+)'))
    assert(length, 'a DAP header without Content-Length: ' .. self.buffer:sub(1, header_end))
    local body_start = header_end + 4
    if #self.buffer < body_start + length - 1 then
      return
    end
    local body = self.buffer:sub(body_start, body_start + length - 1)
    self.buffer = self.buffer:sub(body_start + length)
    vim.schedule(function()
      self:receive(vim.fn.json_decode(body))
    end)
  end
end

function Client:receive(message)
  if message.type == 'response' then
    self.responses[message.request_seq] = message
  elseif message.type == 'event' then
    table.insert(self.events, message)
  elseif message.type == 'request' and message.command == 'runInTerminal' then
    -- Not asked for: the test's configurations use the internal console.
    self:send({ type = 'response', request_seq = message.seq, command = message.command, success = false })
  end
end

function Client:send(message)
  self.seq = self.seq + 1
  message.seq = self.seq
  local body = vim.fn.json_encode(message)
  self.stdin:write(('Content-Length: %d\r\n\r\n%s'):format(#body, body))
  return self.seq
end

--- What the adapter wrote to stderr so far, for failure messages.
function Client:stderr_text()
  return table.concat(self.stderr)
end

--- Sends a request without waiting; returns its seq for `wait_response`.
function Client:request_async(command, arguments)
  return self:send({ type = 'request', command = command, arguments = arguments or vim.empty_dict() })
end

--- Waits for the response to request `seq`; fails the test on timeout or an error response.
function Client:wait_response(seq, what, timeout_ms)
  local ok = vim.wait(timeout_ms or 60000, function()
    return self.responses[seq] ~= nil or self.exit_code ~= nil
  end, 20)
  local response = self.responses[seq]
  assert(ok and response, ('no response to %s (adapter exit %s); stderr:\n%s'):format(what, tostring(self.exit_code), self:stderr_text()))
  assert(response.success, ('%s failed: %s'):format(what, vim.inspect(response.body or response.message)))
  return response.body or {}
end

function Client:request(command, arguments, timeout_ms)
  return self:wait_response(self:request_async(command, arguments), command, timeout_ms)
end

--- Waits for the next event named `name` not yet taken; returns its body.
function Client:wait_event(name, timeout_ms)
  local found
  local ok = vim.wait(timeout_ms or 60000, function()
    for index, event in ipairs(self.events) do
      if event.event == name then
        found = event
        table.remove(self.events, index)
        return true
      end
    end
    return self.exit_code ~= nil
  end, 20)
  assert(ok and found, ('no %s event (adapter exit %s); stderr:\n%s'):format(name, tostring(self.exit_code), self:stderr_text()))
  return found.body or {}
end

--- The text of every `output` event received so far.
function Client:output()
  local lines = {}
  for _, event in ipairs(self.events) do
    if event.event == 'output' and event.body then
      table.insert(lines, event.body.output)
    end
  end
  return table.concat(lines)
end

--- Waits for the adapter process to exit; returns its exit code.
function Client:wait_exit(timeout_ms)
  self.stdin:close()
  vim.wait(timeout_ms or 60000, function()
    return self.exit_code ~= nil
  end, 20)
  assert(self.exit_code ~= nil, 'the adapter did not exit; stderr:\n' .. self:stderr_text())
  return self.exit_code
end

return Client
