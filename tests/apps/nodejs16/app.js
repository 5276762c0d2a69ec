const http = require('http');
const isNumber = require('is-number');
const port = process.env.PORT || 8080;
http.createServer((req, res) => {
  res.end(`Hello from Node.js ${process.version}; is-number(42) is ${isNumber(42)}\n`);
}).listen(port, () => console.log(`listening on ${port}`));
