// What the TypeScript drivers of the ecosystem matrix share: the client's answers to a
// server's requests, and one plan run over a connected client (the SDKs 1.x and 2.x keep
// the same method names).

export const handlers = {
  sample: async () => ({
    role: "assistant",
    content: { type: "text", text: "sampled by the interop client" },
    model: "interop",
  }),
  elicit: async () => ({ action: "accept", content: { name: "Ada" } }),
  roots: async () => ({ roots: [{ uri: "file:///interop", name: "interop" }] }),
};

function sorted(items, key) {
  return items.map((i) => i[key]).sort();
}

async function op(client, step) {
  switch (step.op) {
    case "list_tools":
      return sorted((await client.listTools()).tools, "name");
    case "list_resources":
      return sorted((await client.listResources()).resources, "uri");
    case "list_prompts":
      return sorted((await client.listPrompts()).prompts, "name");
    case "read":
      return await client.readResource({ uri: step.uri });
    case "prompt":
      return await client.getPrompt({ name: step.name, arguments: step.args ?? {} });
    case "call":
      return await client.callTool({ name: step.tool, arguments: step.args ?? {} });
    case "progress": {
      const progress = [];
      const result = await client.callTool(
        { name: step.tool, arguments: step.args ?? {} },
        undefined,
        { onprogress: (p) => progress.push(p.progress) },
      );
      return { progress, result };
    }
    case "cancel": {
      const abort = new AbortController();
      setTimeout(() => abort.abort("the interop client gave up"), step.after_ms);
      try {
        await client.callTool({ name: step.tool, arguments: step.args ?? {} }, undefined, {
          signal: abort.signal,
        });
      } catch {
        // cancelled, as meant
      }
      const then = step.then;
      return { after: await client.callTool({ name: then.tool, arguments: then.args ?? {} }) };
    }
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

// Runs each step, printing one JSON line per step.
export async function runPlan(plan, client) {
  for (const step of plan) {
    const line = { label: step.label ?? step.op };
    try {
      line.value = await op(client, step);
      line.ok = true;
    } catch (e) {
      line.ok = false;
      line.error = `${e?.name ?? "Error"}: ${e?.message ?? e}`;
    }
    console.log(JSON.stringify(line));
  }
}
