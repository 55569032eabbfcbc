"""The classic reranking example shared by the rerank tests: one query, a gating-mechanism passage that answers
it, and two on-topic-looking passages (CNN, transformer) that don't."""

LSTM_QUERY = "How does LSTM handle long-term dependencies?"
LSTM_DOCS = [
    "Convolutional neural networks slide learned filters over local patches of an image, so early layers detect "
    "edges and textures and deeper layers detect shapes.",
    "An LSTM keeps a separate cell state and controls it with gates: the forget gate decides what to drop, the "
    "input gate what to write and the output gate what to expose, so gradients can flow across many time steps "
    "without vanishing, which lets the network carry information over long distances in a sequence.",
    "Transformers replace recurrence with self-attention, relating every position of a sequence to every other "
    "position in parallel, with positional encodings to keep word order.",
]
GATING = 1  # the index of the passage that answers the query
