// The official openai npm client against lowbit serve: chat and completions, streamed and not,
// greedy; prints the texts as JSON for cli_serve.py to compare with `lowbit run`.
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
const prompt = "Once upon a time";
const messages = [{ role: "system", content: "You tell stories." }, { role: "user", content: "Tell me about a cat." }];
const out = {};

const c = await client.completions.create({ model, prompt, max_tokens: 24, temperature: 0 });
out.completion = c.choices[0].text;
let s = "";
for await (const chunk of await client.completions.create({ model, prompt, max_tokens: 24, temperature: 0, stream: true }))
  s += chunk.choices[0]?.text ?? "";
out.completion_stream = s;

const ch = await client.chat.completions.create({ model, messages, max_tokens: 20, temperature: 0 });
out.chat = ch.choices[0].message.content;
s = "";
for await (const chunk of await client.chat.completions.create({ model, messages, max_tokens: 20, temperature: 0, stream: true }))
  s += chunk.choices[0]?.delta?.content ?? "";
out.chat_stream = s;

try {
  await new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 }).models.list();
  out.bad_key_status = 200;
} catch (e) {
  out.bad_key_status = e.status;
}
console.log(JSON.stringify(out));
