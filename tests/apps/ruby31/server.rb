# A small HTTP server on Ruby's standard library.
require "socket"

port = Integer(ENV.fetch("PORT", "4567"))
server = TCPServer.new("0.0.0.0", port)
puts "listening on #{port}"
loop do
  client = server.accept
  while (line = client.gets) && line != "\r\n"; end
  body = "Hello from Ruby #{RUBY_VERSION}\n"
  client.write "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}"
  client.close
end
