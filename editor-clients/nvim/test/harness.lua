--- The tests' runner, shared by every file under test/: `test(name, fn)` runs one case and
--- reports `ok - NAME` or `not ok - NAME` with the error; `finish()` prints the totals and
--- quits Neovim with status 0 only when every case passed.
local M = { passed = 0, failed = 0 }

function M.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    M.passed = M.passed + 1
    io.stdout:write('ok - ' .. name .. '\n')
  else
    M.failed = M.failed + 1
    io.stdout:write('not ok - ' .. name .. '\n    ' .. tostring(err):gsub('\n', '\n    ') .. '\n')
  end
end

function M.finish()
  io.stdout:write(('%d passed, %d failed\n'):format(M.passed, M.failed))
  vim.cmd(M.failed == 0 and 'qall!' or 'cquit 1')
end

return M
