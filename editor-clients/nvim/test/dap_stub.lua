--- A minimal stand-in for nvim-dap (NOT nvim-dap): just the two tables kbridge writes to,
--- plus launch(), which does what nvim-dap does with a function adapter: call it with the
--- configuration and a callback, and hand back the executable adapter it produced.
local dap = { adapters = {}, configurations = {} }

function dap.launch(config)
  local adapter = dap.adapters[config.type]
  assert(adapter, 'no dap.adapters.' .. tostring(config.type))
  if type(adapter) ~= 'function' then
    return adapter
  end
  local produced
  adapter(function(a)
    produced = a
  end, config)
  return produced
end

return dap
