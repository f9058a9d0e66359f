-- luacheck configuration: `luacheck lua bin/bayeux spec examples`
std = "lua54"
max_line_length = 100
codes = true

files["spec/**/*.lua"] = { std = "+busted", max_line_length = 140 }
