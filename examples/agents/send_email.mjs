// A small agent that sends one email through airlock with Node's own http
// module (no packages): an absolute-form request to the proxy.
//
//   HTTP_PROXY=http://127.0.0.1:3128 node examples/agents/send_email.mjs [MAIL_API_URL]
import http from 'node:http';

const target = new URL('/v3/mail/send', process.argv[2] || 'http://localhost:8025');
const proxy = new URL(process.env.HTTP_PROXY || process.env.http_proxy || 'http://127.0.0.1:3128');
const body = JSON.stringify({
  personalizations: [{ to: [{ email: 'client@example.com' }] }],
  from: { email: 'sales@example.com' },
  subject: 'Your quote',
  content: [{ type: 'text/plain', value: 'Hello, the total is 1,200 EUR.' }],
});

const req = http.request({
  host: proxy.hostname,
  port: proxy.port,
  method: 'POST',
  path: target.href, // absolute form: the proxy forwards it
  headers: {
    host: target.host,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'airlock-trigger': 'The client asked for a quote',
    'airlock-agent': 'quote-agent-node',
  },
}, (res) => {
  let data = '';
  res.on('data', (c) => { data += c; });
  res.on('end', () => {
    console.log(`HTTP ${res.statusCode}`);
    for (const h of ['airlock-hold', 'airlock-state']) if (res.headers[h]) console.log(`${h}: ${res.headers[h]}`);
    console.log(data);
  });
});
req.on('error', (e) => { console.error(`request failed: ${e.message}`); process.exit(1); });
req.end(body);
