// Echo with a greeting: an unmodified AWS Lambda Node.js handler (deploy with config {"runtime": "nodejs20"}).
exports.handler = async (event, context) => {
  const name = event && typeof event === 'object' && typeof event.name === 'string' ? event.name : 'world';
  console.log('greeting %s', name);
  return {
    greeting: `Hello, ${name}!`,
    request_id: context.awsRequestId,
    remaining_ms: context.getRemainingTimeInMillis(),
    echo: event,
  };
};
