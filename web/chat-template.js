// chat-template.js — turns chat messages into the prompt text a model was trained on.
//
// A GGUF carries its chat template as Jinja (tokenizer.chat_template). Like llama.cpp's
// llama_chat_apply_template we recognise the common template families by their markers rather than
// running Jinja; a model without a template (or with an unknown one) gets a plain "User:/Assistant:"
// transcript. BOS is added by the tokenizer, never written as text (it would tokenize as plain text).

import { compileTemplate } from './jinja.js';

const FAMILIES = [
  {
    name: 'chatml',
    test: (t) => t.includes('<|im_start|>'),
    turn: (m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`,
    gen: '<|im_start|>assistant\n',
    stops: ['<|im_end|>', '<|im_start|>'],
  },
  {
    name: 'llama3',
    test: (t) => t.includes('<|start_header_id|>'),
    turn: (m) => `<|start_header_id|>${m.role}<|end_header_id|>\n\n${m.content.trim()}<|eot_id|>`,
    gen: '<|start_header_id|>assistant<|end_header_id|>\n\n',
    stops: ['<|eot_id|>', '<|start_header_id|>'],
  },
  {
    name: 'gemma',
    test: (t) => t.includes('<start_of_turn>'),
    turn: (m) => `<start_of_turn>${m.role === 'assistant' ? 'model' : 'user'}\n${m.content.trim()}<end_of_turn>\n`,
    gen: '<start_of_turn>model\n',
    stops: ['<end_of_turn>', '<start_of_turn>'],
  },
  {
    name: 'zephyr',
    test: (t) => t.includes('<|user|>'),
    turn: (m) => `<|${m.role}|>\n${m.content}</s>\n`,
    gen: '<|assistant|>\n',
    stops: ['</s>', '<|user|>'],
  },
  {
    name: 'llama2',
    test: (t) => t.includes('[INST]'),
    render: renderLlama2,
    stops: ['</s>', '[INST]'],
  },
];

/** Llama-2 style: the system prompt goes inside the first [INST] block. */
function renderLlama2(messages, addGen) {
  let out = '', sys = '', first = true;
  for (const m of messages) {
    if (m.role === 'system') { sys = m.content; continue; }
    if (m.role === 'user') {
      const body = sys && first ? `<<SYS>>\n${sys}\n<</SYS>>\n\n${m.content}` : m.content;
      out += `${first ? '' : '<s>'}[INST] ${body.trim()} [/INST]`;
      first = false;
    } else {
      out += ` ${m.content.trim()} </s>`;
    }
  }
  return { text: out, partial: !addGen };
}

const PLAIN = {
  name: 'plain',
  turn: (m) => `${m.role === 'system' ? 'System' : m.role === 'user' ? 'User' : 'Assistant'}: ${m.content.trim()}\n`,
  gen: 'Assistant:',
  stops: ['\nUser:', '\nSystem:'],
};

/**
 * Picks the chat format for a template string (or null/undefined: the plain fallback).
 * The template itself is run (jinja.js) when it parses and renders a probe conversation; stop strings
 * then come from the recognised family, or from the text that opens a user turn ("\nUser:").
 * Returns {name, stops, render(messages, addGenerationPrompt = true) -> prompt text}.
 */
export function chatFormat(template) {
  const fam = (template && FAMILIES.find((f) => f.test(template))) || PLAIN;
  const jinja = template ? tryJinja(template) : null;
  if (jinja) {
    return {
      name: fam === PLAIN ? 'jinja' : `jinja:${fam.name}`,
      stops: fam === PLAIN ? jinja.stops : fam.stops.slice(),
      render(messages, addGen = true) {
        checkMessages(messages);
        return jinja.render(messages, addGen);
      },
    };
  }
  return {
    name: fam.name,
    stops: fam.stops.slice(),
    render(messages, addGen = true) {
      checkMessages(messages);
      if (fam.render) return fam.render(messages, addGen).text;
      return messages.map(fam.turn).join('') + (addGen ? fam.gen : '');
    },
  };
}

/** Compiles a GGUF Jinja template and checks it on a probe; null when it cannot be used. */
function tryJinja(template) {
  try {
    const fn = compileTemplate(template);
    const render = (messages, addGen) => fn({ messages, add_generation_prompt: addGen, bos_token: '', eos_token: '' });
    const MARK = '\u0001';
    const probe = render([{ role: 'user', content: MARK }], true);
    if (!probe.includes(MARK)) return null;
    // The text that opens a user turn, e.g. "User: ": the model starting one means its reply is over.
    const userPrefix = probe.slice(0, probe.indexOf(MARK)).split('\n').pop().trim();
    const stops = userPrefix ? [`\n${userPrefix}`] : [];
    return { render, stops };
  } catch {
    return null;
  }
}

/** Throws a TypeError-like message for malformed message arrays (caught and typed by the caller). */
function checkMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw new Error('messages must be a non-empty array');
  for (const m of messages) {
    if (!m || typeof m.content !== 'string' || !['system', 'user', 'assistant'].includes(m.role))
      throw new Error('each message needs role system|user|assistant and a string content');
  }
}
