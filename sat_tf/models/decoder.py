"""LSTM decoder with visual attention, gating scalar and deep output layer."""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from sat_tf.models.attention import BahdanauAttention
from sat_tf.models.hard_attention import ATTENTION_MODES, HARD_INFERENCE_MODES, sample_locations
from sat_tf.models.rules import require_choice, require_probability


class DecoderState(NamedTuple):
    """Recurrent state carried between decoding steps."""

    hidden: tf.Tensor  # [B, H]
    cell: tf.Tensor  # [B, H]


class StepConstants(NamedTuple):
    """Everything a decoding step reuses: per-image projections and the fused hidden kernel.

    Attention, the LSTM input and the deep output are all linear in the context
    z = beta * sum_i alpha_i a_i, so `a_i W` is computed once per image and each step only mixes
    those rows by alpha. At batch 1 a step is bound by reading weights, and this replaces the
    D x 4H and D x E kernels (the largest ones) by L-row tables.
    """

    attention_keys: tf.Tensor  # [B, L, A]   W_a a_i + b
    context_gates: tf.Tensor  # [B, L, 4H]  a_i W_z (LSTM input weights of the context)
    context_outputs: tf.Tensor  # [B, L, E]  a_i L_z (deep output weights of the context)
    hidden_kernel: tf.Tensor  # [H, 4H + A (+1)]  see `fused_hidden_kernel`


class RecurrentKernels(NamedTuple):
    """Kernels a teacher-forced step multiplies inside the recurrence, each with its transpose."""

    hidden: tf.Tensor  # [H, 4H + A (+1)]  see `fused_hidden_kernel`
    hidden_transposed: tf.Tensor
    context: tf.Tensor  # [D, 4H]  LSTM input weights of the context
    context_transposed: tf.Tensor


class StepOutput(NamedTuple):
    """What one decoding step returns (see `AttentionDecoder.step`)."""

    log_probs: tf.Tensor  # [B, V]
    state: DecoderState
    alpha: tf.Tensor  # [B, L]


def _project(inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """inputs [..., N] @ kernel [N, M] as one 2-D matmul. `tf.matmul` of a [B, T, N] tensor by a
    shared kernel is a broadcasting batch matmul, whose kernel gradient materialises one [N, M]
    product per batch row and sums them (a memory-bound reduction that cost ~10% of a training step)."""
    return tf.tensordot(inputs, kernel, axes=1)


@tf.custom_gradient
def _loop_matmul(inputs: tf.Tensor, kernel: tf.Tensor, kernel_transposed: tf.Tensor):
    """inputs @ kernel inside the training recurrence, whose input gradient reads a kernel
    transposed once before the loop. The default gradient, g @ kernel^T with `transpose_b`, makes
    oneDNN re-layout the whole kernel at every step (2.8x slower for the [1280, 2048] context
    kernel at batch 64). `kernel_transposed` must equal tf.transpose(kernel); it gets no gradient."""

    def gradient(upstream):
        return tf.matmul(upstream, kernel_transposed), tf.matmul(inputs, upstream, transpose_a=True), None

    return tf.matmul(inputs, kernel), gradient


@keras.saving.register_keras_serializable(package="sat_tf")
class AttentionDecoder(keras.layers.Layer):
    """The LSTM decoder of "Show, Attend and Tell" (section 3.1.2 and 4.2.1).

    Per step t, from annotations a [B, L, D], previous word y_{t-1} and state (h_{t-1}, c_{t-1}):
      alpha_t, context = attention(a, h_{t-1})
      beta_t = sigmoid(f_beta(h_{t-1}))                       gating scalar
      z_t = beta_t * context
      h_t, c_t = LSTM([E y_{t-1}; z_t], h_{t-1}, c_{t-1})
      p(y_t) = softmax(L_o dropout(tanh(E y_{t-1} + L_h h_t + L_z z_t)))   deep output layer
    The initial state is h_0 = tanh(f_init_h(mean_i a_i)), c_0 = tanh(f_init_c(mean_i a_i)).
    The tanh before L_o follows the authors' code (arctic-captions).

    The single-step API (`initial_state`, `step_constants`, `step`) is what greedy/beam decoding
    and the exported decoder use. Teacher-forced training (`teacher_forcing`) runs the same
    recurrence (`advance`) and then applies the output layer to all steps in one matmul, which is
    mathematically identical to calling `step` per word and much faster.

    Args:
        vocabulary_size: number of output words (special tokens included).
        embedding_dim: word embedding size m.
        hidden_dim: LSTM size n.
        attention_dim: attention MLP size.
        dropout: dropout rate before the output projection L_o.
        use_gate: apply the gating scalar beta_t (the paper does).
        attention_mode: "soft" (z_t = beta_t sum_i alpha_ti a_i) or "hard" (z_t = beta_t a_{s_t} with
            s_t ~ Multinoulli(alpha_t) while training; see `sat_tf.models.hard_attention`).
        hard_inference: what a hard-attention model attends to when not sampling for training:
            "expectation" (the soft context; the default, best of the three on Flickr8k dev),
            "argmax" (the most likely region) or "sample".
        expectation_probability: hard attention only; the chance per training minibatch of using the
            expectation instead of a sample (0.5 in the paper).
        text_only_context: learn a "no photo" annotation vector that stands in for every region
            of a caption without a photo (`without_photos`): attention over identical regions
            gives exactly that vector as the context, and it is also the mean annotation, so
            text-only captions train the word embedding, LSTM and output layer on language alone.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> decoder = AttentionDecoder(vocabulary_size=1000)
        >>> outputs = decoder.teacher_forcing(features, input_tokens)   # {"logits", "alphas"}
        >>> state = decoder.initial_state(features)
        >>> out = decoder.step(decoder.step_constants(features), state, start_tokens)

    Reference:
        Xu et al., "Show, Attend and Tell", ICML 2015.
    """

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int = 512,
        hidden_dim: int = 512,
        attention_dim: int = 512,
        dropout: float = 0.5,
        use_gate: bool = True,
        attention_mode: str = "soft",
        hard_inference: str = "expectation",
        expectation_probability: float = 0.5,
        text_only_context: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.text_only_context = bool(text_only_context)
        require_choice("attention_mode", attention_mode, ATTENTION_MODES)
        require_choice("hard_inference", hard_inference, HARD_INFERENCE_MODES)
        require_probability("expectation_probability", expectation_probability)
        self.attention_mode = attention_mode
        self.hard_inference = hard_inference
        self.expectation_probability = float(expectation_probability)
        # Location samples and the per-minibatch expectation switch (checkpointed with the model).
        # Only hard attention has one: creating it draws from Keras' global RNG, which would
        # change a soft model's initial weights for the same seed.
        self.location_seed = keras.random.SeedGenerator(name="location_seed") if attention_mode == "hard" else None
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.attention_dim = attention_dim
        self.dropout_rate = dropout
        self.use_gate = use_gate
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
        self.attention = BahdanauAttention(attention_dim, name="attention")
        self.init_hidden = keras.layers.Dense(hidden_dim, activation="tanh", name="init_hidden")
        self.init_cell = keras.layers.Dense(hidden_dim, activation="tanh", name="init_cell")
        self.gate = keras.layers.Dense(1, activation="sigmoid", name="gate")
        self.output_dropout = keras.layers.Dropout(dropout)
        self.output_projection = keras.layers.Dense(vocabulary_size, name="output_projection")

    def build(self, features_shape):
        feature_dim = features_shape[-1]
        pooled_shape = (features_shape[0], feature_dim)
        hidden_shape = (features_shape[0], self.hidden_dim)
        self.embedding.build((None,))
        self.attention.build(features_shape, hidden_shape)
        self.init_hidden.build(pooled_shape)
        self.init_cell.build(pooled_shape)
        self.gate.build(hidden_shape)
        # Fused LSTM: one kernel for all four gates (input, forget, cell, output) per input.
        gates = 4 * self.hidden_dim
        self.lstm_word_kernel = self.add_weight(name="lstm_word_kernel", shape=(self.embedding_dim, gates))
        self.lstm_context_kernel = self.add_weight(name="lstm_context_kernel", shape=(feature_dim, gates))
        self.lstm_recurrent_kernel = self.add_weight(
            name="lstm_recurrent_kernel", shape=(self.hidden_dim, gates), initializer="orthogonal"
        )
        forget_bias = [0.0] * self.hidden_dim + [1.0] * self.hidden_dim + [0.0] * (2 * self.hidden_dim)
        self.lstm_bias = self.add_weight(
            name="lstm_bias", shape=(gates,), initializer=keras.initializers.Constant(forget_bias)
        )
        self.hidden_to_output = self.add_weight(name="hidden_to_output", shape=(self.hidden_dim, self.embedding_dim))
        self.context_to_output = self.add_weight(name="context_to_output", shape=(feature_dim, self.embedding_dim))
        self.output_projection.build((None, self.embedding_dim))
        if self.text_only_context:
            self.no_photo_annotation = self.add_weight(
                name="no_photo_annotation", shape=(feature_dim,), initializer="zeros"
            )

    def without_photos(self, features: tf.Tensor, has_photo: tf.Tensor) -> tf.Tensor:
        """features [B, L, D] with every region of rows where `has_photo` [B] is False replaced by
        the learned "no photo" annotation (needs `text_only_context`)."""
        if not self.text_only_context:
            raise ValueError(
                "captions without a photo need a decoder with text_only_context=True (model.text_only_context)"
            )
        blank = tf.broadcast_to(tf.cast(self.no_photo_annotation, features.dtype), tf.shape(features))
        return tf.where(tf.reshape(has_photo, [-1, 1, 1]), features, blank)

    # ----- single-step API ---------------------------------------------------------------------
    def initial_state(self, features: tf.Tensor) -> DecoderState:
        """h_0, c_0 from MLPs of the mean annotation."""
        mean_annotation = tf.reduce_mean(features, axis=1)
        return DecoderState(self.init_hidden(mean_annotation), self.init_cell(mean_annotation))

    def project_features(self, features: tf.Tensor) -> tf.Tensor:
        """The step-independent part of attention, computed once per image."""
        return self.attention.project_features(features)

    def embed(self, tokens: tf.Tensor) -> tf.Tensor:
        return self.embedding(tokens)

    def advance(self, projected_features, features, state: DecoderState, word_embedding):
        """Attention + gate + LSTM for one step. Returns (new state, gated context z_t, alpha_t)."""
        new_state, context, alpha, _ = self._advance(
            projected_features, features, state, self.word_gates(word_embedding), self.recurrent_kernels()
        )
        return new_state, context, alpha

    def word_gates(self, word_embedding: tf.Tensor) -> tf.Tensor:
        """The previous word's share of the LSTM gates, E y_{t-1} W + b. It does not depend on the
        recurrence, so teacher forcing computes it for all steps in one matmul."""
        return _project(word_embedding, self.lstm_word_kernel) + self.lstm_bias

    def fused_hidden_kernel(self) -> tf.Tensor:
        """h_{t-1} feeds three matmuls per step (LSTM recurrence, attention W_h, gate f_beta);
        concatenating their kernels makes it one larger, more efficient matmul."""
        kernels = [self.lstm_recurrent_kernel, self.attention.hidden_kernel]
        if self.use_gate:
            kernels.append(self.gate.kernel)
        return tf.concat(kernels, axis=1)

    def recurrent_kernels(self) -> RecurrentKernels:
        """The two kernels a training step multiplies inside the recurrence, with their transposes
        taken once before the loop (see `_loop_matmul`)."""
        hidden, context = self.fused_hidden_kernel(), tf.convert_to_tensor(self.lstm_context_kernel)
        return RecurrentKernels(hidden, tf.transpose(hidden), context, tf.transpose(context))

    def _advance(
        self, projected_features, features, state: DecoderState, word_gates, kernels: RecurrentKernels, select=None
    ):
        """Returns (state, context, alpha, location). `select` maps alpha [B, L] to (weights mixing
        the regions, location int [B]) for hard attention; without it the context is the
        expectation (soft attention) and location is None."""
        recurrent, attention_term, beta = self._split_hidden_terms(
            _loop_matmul(state.hidden, kernels.hidden, kernels.hidden_transposed)
        )
        alpha = self.attention.weights_from_hidden_term(projected_features, attention_term)
        weights, location = (alpha, None) if select is None else select(alpha)
        context = tf.einsum("bl,bld->bd", weights, features)
        if beta is not None:
            context = beta * context
        gates = word_gates + recurrent + _loop_matmul(context, kernels.context, kernels.context_transposed)
        return self._lstm_update(gates, state.cell), context, alpha, location

    def _split_hidden_terms(self, terms):
        """Splits h_{t-1} times the fused kernel into (LSTM recurrence, attention W_h h, beta or None)."""
        # One split, not three slices: a split's gradient is one concat, where each slice's gradient
        # is a zero-padded copy of the whole [B, 4H + A + 1] tensor, summed afterwards.
        sizes = [4 * self.hidden_dim, self.attention_dim] + ([1] if self.use_gate else [])
        recurrent, attention_term, *gate = tf.split(terms, sizes, axis=-1)
        beta = tf.sigmoid(gate[0] + self.gate.bias) if self.use_gate else None  # gating scalar
        return recurrent, attention_term, beta

    @staticmethod
    def _lstm_update(gates, cell) -> DecoderState:
        input_gate, forget_gate, candidate, output_gate = tf.split(gates, 4, axis=-1)
        cell = tf.sigmoid(forget_gate) * cell + tf.sigmoid(input_gate) * tf.tanh(candidate)
        return DecoderState(tf.sigmoid(output_gate) * tf.tanh(cell), cell)

    def output_logits(self, word_embedding, hidden, context, training=False) -> tf.Tensor:
        """Deep output layer: L_o dropout(tanh(E y_{t-1} + L_h h_t + L_z z_t)); works on [..., *] inputs."""
        deep = tf.tanh(
            word_embedding + _project(hidden, self.hidden_to_output) + _project(context, self.context_to_output)
        )
        return self.output_projection(self.output_dropout(deep, training=training))

    def step_constants(self, features: tf.Tensor) -> StepConstants:
        """Per-image tensors for `step`, computed once before a decoding loop."""
        return StepConstants(
            attention_keys=self.project_features(features),
            context_gates=tf.einsum("bld,dg->blg", features, self.lstm_context_kernel),
            context_outputs=tf.einsum("bld,de->ble", features, self.context_to_output),
            hidden_kernel=self.fused_hidden_kernel(),
        )

    @staticmethod
    def repeat_constants(constants: StepConstants, times: int) -> StepConstants:
        """Repeats each image's constants `times` times (hypotheses of one image adjacent); the
        fused hidden kernel is shared by all images."""
        per_image = ("attention_keys", "context_gates", "context_outputs")
        return constants._replace(**{name: tf.repeat(getattr(constants, name), times, axis=0) for name in per_image})

    @staticmethod
    def num_regions(features: tf.Tensor):
        """L, the number of attended regions (what each step's alpha is over)."""
        return tf.shape(features)[1]

    def step(self, constants: StepConstants, state: DecoderState, previous_tokens) -> StepOutput:
        """One inference step: previous tokens [B] -> log-probs [B, V], new state, alpha [B, L].

        Same function as `advance` + `output_logits`, with the context's linear maps taken from
        `constants` (alpha-weighted rows of a_i W instead of (sum_i alpha_i a_i) W)."""
        word_embedding = self.embed(previous_tokens)
        recurrent, attention_term, beta = self._split_hidden_terms(tf.matmul(state.hidden, constants.hidden_kernel))
        alpha = self.attention.weights_from_hidden_term(constants.attention_keys, attention_term)
        weights = self.inference_weights(alpha)
        context_gates = tf.einsum("bl,blg->bg", weights, constants.context_gates)
        context_outputs = tf.einsum("bl,ble->be", weights, constants.context_outputs)
        if beta is not None:
            context_gates, context_outputs = beta * context_gates, beta * context_outputs
        new_state = self._lstm_update(self.word_gates(word_embedding) + recurrent + context_gates, state.cell)
        deep = tf.tanh(word_embedding + tf.matmul(new_state.hidden, self.hidden_to_output) + context_outputs)
        logits = self.output_projection(deep)
        return StepOutput(tf.nn.log_softmax(logits, axis=-1), new_state, alpha)

    def inference_weights(self, alpha: tf.Tensor) -> tf.Tensor:
        """Region weights at test time: alpha (soft), or per `hard_inference` for hard attention."""
        if self.attention_mode == "soft" or self.hard_inference == "expectation":
            return alpha
        if self.hard_inference == "argmax":
            location = tf.argmax(alpha, axis=-1, output_type=tf.int32)
        else:
            uniform = keras.random.uniform(tf.shape(alpha)[:1], seed=self.location_seed, dtype=alpha.dtype)
            location = sample_locations(alpha, uniform)
        return tf.one_hot(location, tf.shape(alpha)[-1], dtype=alpha.dtype)

    # ----- training ----------------------------------------------------------------------------
    def teacher_forcing(self, features, input_tokens, training=False, locations=None) -> dict:
        """Runs the decoder over ground-truth inputs [B, T].

        Returns a dict with "logits" [B, T, V] and "alphas" [B, T, L]; hard attention adds
        "locations" (int32 [B, T], the regions attended) and "used_expectation" (bool scalar, true
        when this minibatch used the soft context instead, which the training loss must know).

        Args:
            locations: hard attention only; int [B, T] regions to attend instead of sampling
                (exact enumeration in tests, or replaying a sample).
        """
        embeddings = self.embed(input_tokens)  # [B, T, E]
        projected = self.project_features(features)
        kernels = self.recurrent_kernels()
        steps = tf.shape(input_tokens)[1]
        # [T, B, 4H] in one matmul, read per step from a TensorArray: indexing a tensor inside the
        # loop would make each step's gradient a zero-filled [T, B, 4H] tensor.
        word_gates = tf.TensorArray(embeddings.dtype, size=steps).unstack(
            tf.transpose(self.word_gates(embeddings), [1, 0, 2])
        )
        hard = self.attention_mode == "hard"
        used_expectation = tf.constant(False)
        if hard and locations is None and training:
            uniforms = keras.random.uniform(tf.stack([steps, tf.shape(features)[0]]), seed=self.location_seed)
            draw = keras.random.uniform((), seed=self.location_seed)
            used_expectation = draw < self.expectation_probability
        regions = tf.shape(features)[1]

        def select_at(t):
            """Hard attention: alpha -> (one-hot of the location attended at step t, location)."""

            def select(alpha):
                if locations is not None:
                    location = tf.cast(locations[:, t], tf.int32)
                elif training:
                    location = sample_locations(alpha, tf.cast(uniforms[t], alpha.dtype))
                else:
                    weights = self.inference_weights(alpha)
                    return weights, tf.argmax(weights, axis=-1, output_type=tf.int32)
                one_hot = tf.one_hot(location, regions, dtype=alpha.dtype)
                return tf.where(used_expectation, alpha, one_hot), location

            return select

        def body(t, state, hiddens, contexts, alphas, chosen):
            state, context, alpha, location = self._advance(
                projected, features, state, word_gates.read(t), kernels, select=select_at(t) if hard else None
            )
            if location is None:
                location = tf.zeros(tf.shape(alpha)[:1], tf.int32)
            return (
                t + 1,
                state,
                hiddens.write(t, state.hidden),
                contexts.write(t, context),
                alphas.write(t, alpha),
                chosen.write(t, location),
            )

        arrays = [tf.TensorArray(features.dtype, size=steps) for _ in range(3)]
        arrays.append(tf.TensorArray(tf.int32, size=steps))
        _, _, hiddens, contexts, alphas, chosen = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), self.initial_state(features), *arrays),
            maximum_iterations=steps,  # lets XLA (jit_compile) size the TensorArrays
        )
        batch_major = lambda ta: tf.transpose(ta.stack(), [1, 0, 2])  # noqa: E731
        logits = self.output_logits(embeddings, batch_major(hiddens), batch_major(contexts), training=training)
        outputs = {"logits": logits, "alphas": batch_major(alphas)}
        if hard:
            outputs["locations"] = tf.transpose(chosen.stack())
            outputs["used_expectation"] = used_expectation
        return outputs

    def call(self, features, input_tokens, training=False, locations=None):
        return self.teacher_forcing(features, input_tokens, training=training, locations=locations)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            attention_dim=self.attention_dim,
            dropout=self.dropout_rate,
            use_gate=self.use_gate,
            attention_mode=self.attention_mode,
            hard_inference=self.hard_inference,
            expectation_probability=self.expectation_probability,
            text_only_context=self.text_only_context,
        )
        return config
